package ingest

import (
	"runtime"
	"sync"
)

// HashPool runs CPU-bound work (hashing, node encoding) on a fixed set of
// goroutines shared by every request, so that many concurrent uploads cannot
// start more hashing goroutines than there are cores, and one large upload can
// still use all of them.
type HashPool struct {
	work chan func()
	wg   sync.WaitGroup

	// mu is held for reading by every Submit while it hands work over,
	// and for writing by Stop while it closes work: a Submit racing a
	// stop (an add outliving a shutdown timeout) never sends on a closed
	// channel.
	mu      sync.RWMutex
	stopped bool
}

// NewHashPool starts workers goroutines; 0 means runtime.GOMAXPROCS(0).
func NewHashPool(workers int) *HashPool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := &HashPool{work: make(chan func(), workers)}
	for i := 0; i < workers; i++ {
		p.wg.Go(func() {
			for f := range p.work {
				f()
			}
		})
	}
	return p
}

// Workers reports how many goroutines run submitted work.
func (p *HashPool) Workers() int { return cap(p.work) }

// Submit queues f. It blocks while all workers are busy and the queue is
// full: that is the backpressure that keeps the reader of an upload from
// running ahead of the hashing. After Stop, f runs on the caller's
// goroutine: work submitted late still completes, and nothing panics.
func (p *HashPool) Submit(f func()) {
	p.mu.RLock()
	if p.stopped {
		p.mu.RUnlock()
		f()
		return
	}
	p.work <- f // the workers drain work until Stop has the lock
	p.mu.RUnlock()
}

// Stop waits for the queued work to finish and stops the workers. Work
// submitted afterwards runs on the submitter's goroutine.
func (p *HashPool) Stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.work)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
