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
	once sync.Once
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
// running ahead of the hashing.
func (p *HashPool) Submit(f func()) { p.work <- f }

// Stop waits for the queued work to finish and stops the workers. Submit must
// not be called after Stop.
func (p *HashPool) Stop() {
	p.once.Do(func() { close(p.work) })
	p.wg.Wait()
}
