package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// bar is a progress bar: redrawn in place on a terminal, a line per tenth
// otherwise (CI logs).
type bar struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	n       int
	tty     bool
	began   time.Time
	lastPct int
	drawn   time.Time
}

func newBar(w io.Writer, label string, n int) *bar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	b := &bar{w: w, label: label, n: n, tty: tty, began: time.Now(), lastPct: -1}
	b.set(0)
	return b
}

func (b *bar) set(done int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pct := done * 100 / max(1, b.n)
	rate := float64(done) / max(time.Since(b.began).Seconds(), 1e-9)
	if b.tty {
		if done != b.n && time.Since(b.drawn) < 100*time.Millisecond {
			return
		}
		b.drawn = time.Now()
		const width = 30
		fill := width * done / max(1, b.n)
		fmt.Fprintf(b.w, "\r%-34s [%s%s] %5d/%d %6.1f/s", b.label, strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, b.n, rate)
		return
	}
	if pct/10 != b.lastPct/10 {
		b.lastPct = pct
		fmt.Fprintf(b.w, "%s: %d/%d (%d%%) %.1f/s\n", b.label, done, b.n, pct, rate)
	}
}

func (b *bar) finish() { b.finishRate(-1) }

// finishRate ends the bar; rate, when not negative, is the round's figure.
func (b *bar) finishRate(rate float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty {
		fmt.Fprint(b.w, "\r\033[K")
	}
	if rate >= 0 {
		fmt.Fprintf(b.w, "%-34s done in %s: %.1f orders/s\n", b.label, time.Since(b.began).Round(100*time.Millisecond), rate)
	}
}
