package bench

import (
	"math"
	"slices"
	"time"
)

// Spread is a figure measured over several rounds: the median, which the
// results quote, and the min and max, which show how noisy the machine was.
type Spread struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds"`
}

func spread(values []float64) Spread {
	if len(values) == 0 {
		return Spread{}
	}
	s := slices.Clone(values)
	slices.Sort(s)
	return Spread{Median: median(s), Min: s[0], Max: s[len(s)-1], Rounds: values}
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	N   int     `json:"n"`
}

// percentiles uses the nearest-rank method on a copy of ds.
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	return Percentiles{P50: rank(50), P95: rank(95), P99: rank(99), Max: ms(s[len(s)-1]), N: len(s)}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*100) / 100 }

// PercentileSpread is a latency figure over rounds: each percentile as the
// median of the rounds' values, with min and max.
type PercentileSpread struct {
	P50 Spread `json:"p50_ms"`
	P95 Spread `json:"p95_ms"`
	P99 Spread `json:"p99_ms"`
}

func percentileSpread(rounds []Percentiles) PercentileSpread {
	var p50, p95, p99 []float64
	for _, r := range rounds {
		if r.N == 0 {
			continue
		}
		p50, p95, p99 = append(p50, r.P50), append(p95, r.P95), append(p99, r.P99)
	}
	return PercentileSpread{P50: spread(p50), P95: spread(p95), P99: spread(p99)}
}

// throughputSeries buckets completion times into per-second rates since
// start, for the plot.
func throughputSeries(start time.Time, done []time.Time, bucket time.Duration) []float64 {
	if len(done) == 0 {
		return nil
	}
	last := slices.MaxFunc(done, func(a, b time.Time) int { return a.Compare(b) })
	n := int(last.Sub(start)/bucket) + 1
	counts := make([]float64, n)
	for _, t := range done {
		i := int(t.Sub(start) / bucket)
		if i >= 0 && i < n {
			counts[i]++
		}
	}
	for i := range counts {
		counts[i] /= bucket.Seconds()
	}
	return counts
}
