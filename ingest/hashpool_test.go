package ingest

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestSubmitAfterStop: work submitted while or after the pool stops still
// runs, and nothing panics (an add that outlives a shutdown timeout).
func TestSubmitAfterStop(t *testing.T) {
	p := NewHashPool(2)
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				done := make(chan struct{})
				p.Submit(func() { ran.Add(1); close(done) })
				<-done
			}
		})
	}
	p.Stop()
	wg.Wait()
	p.Stop() // twice is harmless
	done := false
	p.Submit(func() { done = true })
	if !done || ran.Load() != 4000 {
		t.Fatalf("after Stop: late work ran %v, %d of 4000 ran", done, ran.Load())
	}
}
