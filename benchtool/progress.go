package benchtool

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// IsTerminal reports whether f is a terminal (a character device other
// than /dev/null), where a progress line that rewrites itself makes sense.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(st, null) {
		return false
	}
	return true
}

// progressInterval is how often the progress line is redrawn.
const progressInterval = 250 * time.Millisecond

// startProgress redraws a progress line on w until the returned function
// is called, which clears it.
func startProgress(w io.Writer, sent *atomic.Int64, total int64, rep *Report) (stop func()) {
	start := time.Now()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(progressInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-tick.C:
				fmt.Fprint(w, "\r\x1b[K"+progressLine(rep.currentName(), sent.Load(), total, time.Since(start)))
			}
		}
	}()
	return func() { close(quit); <-done }
}

// progressLine is "[ingestd 2/3] 1.2 GiB / 6 GiB  845.3 MB/s  ETA 5s".
func progressLine(current string, done, total int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	eta := "?"
	if rate > 0 && total >= done {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %s / %s  %.1f MB/s  ETA %s", current, FormatSize(done), FormatSize(total), rate/1e6, eta)
}
