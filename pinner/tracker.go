package pinner

import (
	"context"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
)

// op is what a tracker item asks of its peer.
type op int

const (
	opPin op = iota
	opUnpin
)

// item is the tracker's record of one CID on one peer, kept only while the
// peer is not in the steady state the pinset implies (pinned where
// allocated, absent elsewhere): an operation queued, running or failed, or
// a pin found missing. Steady items are deleted, so the tracker's memory
// grows with the work in flight and the failures, not with the pinset.
//
// States and transitions (all under peerTracker.mu):
//
//	enqueue:         any -> pin_queued | unpin_queued (gen++, attempts 0)
//	worker picks:    *_queued (not running) -> pinning | unpinning, running
//	op succeeds:     -> deleted (steady), unless gen moved meanwhile
//	op fails:        -> *_queued again after a backoff while attempts < max,
//	                 else pin_error | unpin_error (kept until recover)
//	live check or
//	reconciliation:  (no item) -> unexpectedly_unpinned; a later check that
//	                 finds the pin deletes it
//
// An enqueue while the op runs bumps gen: the worker then ignores its
// result and runs the item again, so one peer never runs two operations on
// one CID at once.
type item struct {
	op        op
	recursive bool
	name      string
	from      cid.Cid // pin-update source, undefined otherwise
	status    Status
	err       string
	ts        time.Time
	attempts  int
	gen       uint64
	running   bool
	retry     *time.Timer // pending backoff, nil if none
}

// peerTracker tracks one peer's operations. Jobs are CID keys on a bounded
// channel served by a fixed number of workers; an item whose job did not
// fit stays queued (overflow) and is sent again by the pinner's pump.
type peerTracker struct {
	id   string
	jobs chan string // cid.KeyString() of items to run

	mu       sync.Mutex
	items    map[string]*item
	overflow bool // an enqueue found jobs full
	closed   bool
}

func newPeerTracker(id string, queue int) *peerTracker {
	return &peerTracker{id: id, jobs: make(chan string, queue), items: make(map[string]*item)}
}

// enqueue records a new operation for c and schedules it.
func (t *peerTracker) enqueue(c cid.Cid, o op, recursive bool, name string, from cid.Cid) {
	k := c.KeyString()
	t.mu.Lock()
	it := t.items[k]
	if it == nil {
		it = &item{}
		t.items[k] = it
	}
	if it.retry != nil {
		it.retry.Stop()
		it.retry = nil
	}
	it.op, it.recursive, it.name, it.from = o, recursive, name, from
	it.status = StatusPinQueued
	if o == opUnpin {
		it.status = StatusUnpinQueued
	}
	it.err, it.attempts, it.ts = "", 0, time.Now()
	it.gen++
	send := !it.running
	t.mu.Unlock()
	if send {
		t.send(k)
	}
}

// send hands k to the workers without blocking; a full queue leaves the
// item queued for the pump.
func (t *peerTracker) send(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	select {
	case t.jobs <- k:
	default:
		t.overflow = true
	}
}

// pump sends every queued item that is not running again, once a full
// queue was seen. It runs on the pinner's maintenance loop.
func (t *peerTracker) pump() {
	t.mu.Lock()
	if !t.overflow {
		t.mu.Unlock()
		return
	}
	t.overflow = false
	var keys []string
	for k, it := range t.items {
		if !it.running && it.retry == nil && (it.status == StatusPinQueued || it.status == StatusUnpinQueued) {
			keys = append(keys, k)
		}
	}
	t.mu.Unlock()
	for _, k := range keys {
		t.send(k)
	}
}

// job is one run of an item's operation, taken by a worker.
type job struct {
	c         cid.Cid
	op        op
	recursive bool
	name      string
	from      cid.Cid
	gen       uint64
}

// take marks the item of k running and returns its operation, or false if
// there is nothing to run (done, running elsewhere, or waiting a backoff).
func (t *peerTracker) take(k string) (job, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	it := t.items[k]
	if it == nil || it.running || it.retry != nil || (it.status != StatusPinQueued && it.status != StatusUnpinQueued) {
		return job{}, false
	}
	c, err := cid.Cast([]byte(k))
	if err != nil {
		delete(t.items, k)
		return job{}, false
	}
	it.running = true
	it.status = StatusPinning
	if it.op == opUnpin {
		it.status = StatusUnpinning
	}
	it.ts = time.Now()
	return job{c: c, op: it.op, recursive: it.recursive, name: it.name, from: it.from, gen: it.gen}, true
}

// done records the outcome of j. It reports whether the item must run
// again at once (it was enqueued anew while j ran).
func (t *peerTracker) done(k string, j job, err error, maxAttempts int, backoff func(int) time.Duration) (again bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	it := t.items[k]
	if it == nil {
		return false
	}
	it.running = false
	if it.gen != j.gen {
		return it.status == StatusPinQueued || it.status == StatusUnpinQueued
	}
	it.ts = time.Now()
	if err == nil {
		delete(t.items, k)
		return false
	}
	it.attempts++
	it.err = err.Error()
	if it.attempts >= maxAttempts || t.closed {
		it.status = StatusPinError
		if j.op == opUnpin {
			it.status = StatusUnpinError
		}
		return false
	}
	it.status = StatusPinQueued
	if j.op == opUnpin {
		it.status = StatusUnpinQueued
	}
	gen := it.gen
	it.retry = time.AfterFunc(backoff(it.attempts), func() {
		t.mu.Lock()
		if cur := t.items[k]; cur != it || it.gen != gen {
			t.mu.Unlock()
			return
		}
		it.retry = nil
		t.mu.Unlock()
		t.send(k)
	})
	return false
}

// get returns a copy of c's item, if any.
func (t *peerTracker) get(c cid.Cid) (item, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	it := t.items[c.KeyString()]
	if it == nil {
		return item{}, false
	}
	return *it, true
}

// markMissing records that the peer does not hold c although it should,
// unless an operation on c is queued or running.
func (t *peerTracker) markMissing(c cid.Cid) {
	k := c.KeyString()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.items[k] != nil {
		return
	}
	t.items[k] = &item{op: opPin, recursive: true, status: StatusUnexpectedlyUnpinned, err: errUnexpectedlyUnpinned, ts: time.Now()}
}

// fail records that the pin of c failed with err (a check outside the
// workers found it broken), unless an operation on c is queued or running.
func (t *peerTracker) fail(c cid.Cid, err error) {
	k := c.KeyString()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.items[k] != nil {
		return
	}
	t.items[k] = &item{op: opPin, recursive: true, status: StatusPinError, err: err.Error(), ts: time.Now(), attempts: 1}
}

// markPresent forgets a stale unexpectedly_unpinned record of c.
func (t *peerTracker) markPresent(c cid.Cid) {
	k := c.KeyString()
	t.mu.Lock()
	defer t.mu.Unlock()
	if it := t.items[k]; it != nil && it.status == StatusUnexpectedlyUnpinned {
		delete(t.items, k)
	}
}

// failed lists the CIDs whose items need recovering: pin or unpin errors
// and unexpectedly unpinned pins.
func (t *peerTracker) failed() []cid.Cid {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []cid.Cid
	for k, it := range t.items {
		switch it.status {
		case StatusPinError, StatusUnpinError, StatusUnexpectedlyUnpinned:
			if c, err := cid.Cast([]byte(k)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// unpinsInFlight lists the CIDs with a queued, running or failed unpin:
// they are no longer in the pinset but still reported by /pins.
func (t *peerTracker) unpinsInFlight() []cid.Cid {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []cid.Cid
	for k, it := range t.items {
		if it.op == opUnpin {
			if c, err := cid.Cast([]byte(k)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// queued counts the operations waiting or running: the pinqueue metric.
func (t *peerTracker) queued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, it := range t.items {
		switch it.status {
		case StatusPinQueued, StatusUnpinQueued, StatusPinning, StatusUnpinning:
			n++
		}
	}
	return n
}

// close stops scheduling: pending backoffs are cancelled and no job is
// sent any more. Workers end when the pinner's context ends.
func (t *peerTracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, it := range t.items {
		if it.retry != nil {
			it.retry.Stop()
			it.retry = nil
		}
	}
}

// runWorker serves t's jobs with run until ctx ends.
func (t *peerTracker) runWorker(ctx context.Context, run func(context.Context, job) error, maxAttempts int, backoff func(int) time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-t.jobs:
			for {
				j, ok := t.take(k)
				if !ok {
					break
				}
				err := run(ctx, j)
				if ctx.Err() != nil {
					return
				}
				if !t.done(k, j, err, maxAttempts, backoff) {
					break
				}
			}
		}
	}
}
