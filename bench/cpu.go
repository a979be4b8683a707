package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/pprof/profile"
)

// clockTick is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuSample is the CPU time used so far by this process and by the private
// PostgreSQL (postmaster and backends; 0 when PostgreSQL is external).
type cpuSample struct {
	self, postgres time.Duration
}

// sampleCPU reads both; pgPID is the postmaster's PID or 0.
func sampleCPU(pgPID int) cpuSample {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	s := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	if pgPID > 0 {
		s.postgres = postgresCPU(pgPID)
	}
	return s
}

// postgresCPU is the postmaster's own CPU time, that of its exited children
// (cutime and cstime, which the kernel adds up when the postmaster reaps
// them) and that of the backends still running.
func postgresCPU(pid int) time.Duration {
	fields := procStat(pid)
	if len(fields) < 15 {
		return 0
	}
	total := ticks(fields, 11) + ticks(fields, 12) + ticks(fields, 13) + ticks(fields, 14)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	me := strconv.Itoa(pid)
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f := procStat(child)
		if len(f) > 12 && f[1] == me {
			total += ticks(f, 11) + ticks(f, 12)
		}
	}
	return total
}

// procStat returns the fields of /proc/<pid>/stat after the command name:
// index 0 is the state, 1 the parent PID, 11 and 12 utime and stime, 13 and
// 14 cutime and cstime (proc(5) numbers them from 3).
func procStat(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

func ticks(fields []string, i int) time.Duration {
	n, _ := strconv.ParseInt(fields[i], 10, 64)
	return time.Duration(n) * clockTick
}

// peakRSS is the process's peak resident set size in MiB (VmHWM), and that
// of the postmaster with its live backends summed (an upper bound: shared
// buffers count once per process).
func peakRSS(pid int) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// parts classifies the CPU profile's samples by the part of the process
// whose code they were running: a sample with a frame of one of the first
// two (the embedded servers) anywhere in its stack is theirs; otherwise the
// first frame, from the leaf up, that matches a part names it.
var parts = []struct {
	name     string
	prefixes []string
}{
	{"temporal server", []string{"go.temporal.io/server/", "github.com/temporalio/sqlparser", "modernc.org/sqlite", "github.com/temporalio/ui-server"}},
	{"nats server", []string{"github.com/nats-io/nats-server/"}},
	{"relay and consumers", []string{"github.com/orderflow/orderflow/events", "github.com/orderflow/orderflow/promotions", "github.com/orderflow/orderflow/analytics", "github.com/orderflow/orderflow/courier", "github.com/nats-io/nats.go"}},
	{"http api", []string{"github.com/orderflow/orderflow/api", "github.com/labstack/echo", "net/http."}},
	{"worker and sdk", []string{"go.temporal.io/sdk/", "github.com/orderflow/orderflow/activities", "github.com/orderflow/orderflow/workflows", "github.com/orderflow/orderflow/bench"}},
	{"postgres client", []string{"github.com/jackc/pgx", "database/sql."}},
	{"grpc and protobuf", []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/gogo/protobuf"}},
}

// profiler samples this process's CPU for one round.
type profiler struct {
	buf bytes.Buffer
	on  bool
}

func (p *profiler) start() {
	p.buf.Reset()
	p.on = pprof.StartCPUProfile(&p.buf) == nil
}

// stop ends the profile and returns each part's share of the samples.
// Code that belongs to no part (the Go runtime, GC, syscalls) is "runtime
// and other"; it is shared by all parts.
func (p *profiler) stop() map[string]float64 {
	if !p.on {
		return nil
	}
	pprof.StopCPUProfile()
	p.on = false
	prof, err := profile.Parse(&p.buf)
	if err != nil {
		return nil
	}
	totals := map[string]int64{}
	var all int64
	for _, s := range prof.Sample {
		v := s.Value[len(s.Value)-1] // cpu nanoseconds
		all += v
		totals[classify(s)] += v
	}
	shares := map[string]float64{}
	for k, v := range totals {
		if all > 0 {
			shares[k] = float64(v) / float64(all)
		}
	}
	return shares
}

func classify(s *profile.Sample) string {
	// The two servers embedded in the process are whole subsystems: a
	// sample with any of their frames is theirs, whatever library code it
	// was in at the leaf (the Temporal server's SQL calls, gRPC handlers).
	for _, part := range parts[:2] {
		if stackHas(s, part.prefixes) {
			return part.name
		}
	}
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			for _, part := range parts[2:] {
				if hasPrefix(line.Function.Name, part.prefixes) {
					return part.name
				}
			}
		}
	}
	return "runtime and other"
}

func stackHas(s *profile.Sample, prefixes []string) bool {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil && hasPrefix(line.Function.Name, prefixes) {
				return true
			}
		}
	}
	return false
}

func hasPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
