package blockfanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/kuborpc"
)

// stream is one peer of a session. Its states, all changed under s.mu:
//
//	idle ──waitWork: a block to send (acked < s.end)──▶ open (gen++)
//	open ──request returned nil (all it sent acknowledged)──▶ idle
//	open ──request failed──▶ idle after a backoff (attempts++), or dropped
//	idle ──Close called, acked == s.end──▶ complete (final)
//	any  ──retries spent, permanent error, lagging (watch), known down at
//	       NewSession, or the session failed──▶ dropped: err set (final)
//
// While open, the body writer (transport goroutine) moves written and
// ackable forward and sets started, busy and bodyDone; the answer reader
// (run's goroutine) moves acked forward: per part for block/put, all at
// once at the end for dag/import. A writer of an older request sees gen
// changed (or open false) and stops with errRequestAborted.
type stream struct {
	s    *Session
	peer *Peer

	// Guarded by s.mu.
	acked    uint64 // blocks [0, acked) acknowledged by the peer
	written  uint64 // blocks [0, written) handed to the current request
	ackable  uint64 // blocks [0, ackable) followed by a delimiter handed over, so kubo can acknowledge them
	gen      uint64 // number of the current (or last) request
	open     bool   // a request is open
	started  bool   // the open request's body writer has run
	busy     bool   // the body writer is writing bytes it was handed
	bodyDone bool   // the closing delimiter was handed over
	since    time.Time
	wake     chan struct{}           // signals the writer or waiter: new block, closing
	cancel   context.CancelCauseFunc // of the open request
	err      error                   // set when the peer is dropped from the session
	complete bool                    // acknowledged every block and returned

	attempts int // failed requests; used by run only
}

// owed reports whether the peer owes an acknowledgement (or has not
// taken bytes it was handed): only then does the stall clock run, and an
// acknowledgement or a completed write restarts it. A session waiting for
// its caller's next block is owed nothing, since kubo acknowledges a block
// only once the next part (or the end) begins.
func (st *stream) owed() bool {
	return st.open && (!st.started || st.busy || st.acked < st.ackable)
}

// touch restarts the stall clock if the peer just began to owe something.
func (st *stream) touch(wasOwed bool) {
	if !wasOwed && st.owed() {
		st.since = time.Now()
	}
}

// drop removes st's peer from the session for err. If too few peers are
// left, the session fails with ErrQuorum at once: healthy peers are not
// waited for.
func (st *stream) drop(err error) {
	s := st.s
	err = fmt.Errorf("cannot put blocks to peer %s: %w", st.peer, err)
	s.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	var quorum error
	if s.err == nil && s.liveLocked() < s.minOK {
		quorum = s.quorumErrorLocked()
	}
	space := s.releaseLocked()
	s.mu.Unlock()
	closeSpace(space)
	s.f.recordErr(st.peer, err)
	if quorum != nil {
		s.fail(quorum)
	}
}

// dropped reports whether st's peer was dropped from the session.
func (st *stream) dropped() bool {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	return st.err != nil
}

// exit marks st's goroutine as returned; the last one closes streamsDone.
func (st *stream) exit() {
	s := st.s
	s.mu.Lock()
	s.running--
	last := s.running == 0
	s.mu.Unlock()
	if last {
		close(s.streamsDone)
	}
}

// run is st's goroutine: it opens a block/put request whenever the peer
// has blocks to take, and retries failed requests from the first block the
// peer has not acknowledged, until the session is closed and every block
// acknowledged, the peer is dropped, or the session fails.
func (st *stream) run() {
	defer st.exit()
	s, cfg := st.s, &st.s.f.cfg
	for {
		start, gen, ok := st.waitWork()
		if !ok {
			return
		}
		began := time.Now()
		err := st.request(start, gen)
		cfg.metrics.PeerRequest(st.peer.Name, time.Since(began), err != nil && s.ctx.Err() == nil)
		if err == nil {
			continue
		}
		if s.ctx.Err() != nil || st.dropped() {
			return // the session failed or was aborted, or the peer dropped; its error says why
		}
		if errors.Is(err, errNoImport) {
			s.f.recordErr(st.peer, err)
			continue // at once, with block/put; not a failure of the peer
		}
		st.attempts++
		if kuborpc.IsPermanent(err) {
			st.drop(fmt.Errorf("%w: %w", ErrPeerUnavailable, err))
			return
		}
		if st.attempts > cfg.maxRetries {
			st.drop(fmt.Errorf("%w: gave up after %d attempts: %w", ErrPeerUnavailable, st.attempts, err))
			return
		}
		d := kuborpc.Backoff(st.attempts, err)
		if d > cfg.stallTimeout {
			st.drop(fmt.Errorf("%w: asked to retry after %v, beyond the stall timeout (%v): %w", ErrPeerUnavailable, d, cfg.stallTimeout, err))
			return
		}
		s.f.recordErr(st.peer, err)
		if !kuborpc.Sleep(s.ctx, d) {
			return
		}
	}
}

// waitWork waits until the peer has a block to take and opens a request
// for it (resending from the first unacknowledged block), or reports false
// when the peer is done: every block acknowledged after Close, or the
// session failed.
func (st *stream) waitWork() (start, gen uint64, ok bool) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.errLocked() != nil || st.err != nil:
			return 0, 0, false
		case st.acked < s.end:
			st.gen++
			st.wake = make(chan struct{}, 1) // a writer of an earlier request keeps its own
			st.open, st.started, st.busy, st.bodyDone = true, false, false, false
			st.written, st.ackable = st.acked, st.acked
			st.since = time.Now()
			s.stats.Requests++
			return st.acked, st.gen, true
		case s.closing:
			st.complete = true
			return 0, 0, false
		}
		wake := st.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-s.ctx.Done():
		}
		s.mu.Lock()
	}
}

// request sends the blocks from start on in one request: a dag/import
// segment, or a block/put until the session is closed or a block with
// another prefix comes. It checks every acknowledgement and returns nil
// once every block it sent is acknowledged and kubo ended the response
// without error.
func (st *stream) request(start, gen uint64) error {
	s := st.s
	ctx, cancel := context.WithCancelCause(s.ctx)
	car := !st.peer.noImport.Load()
	s.mu.Lock()
	st.cancel = cancel
	first := s.at(start)
	wake := st.wake
	if car {
		s.stats.Imports++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		st.open, st.cancel = false, nil
		s.mu.Unlock()
		cancel(nil)
	}()

	body := &putBody{
		st: st, gen: gen, ctx: ctx, wake: wake, boundary: s.boundary,
		prefix: first.prefix, car: car, start: start, next: start,
	}
	cmd, args := "dag/import", importArgs
	if !car {
		cmd = "block/put"
		args = url.Values{
			"cid-codec":       {multicodec.Code(first.codec).String()},
			"mhtype":          {mh.Codes[first.prefix.mhType]},
			"mhlen":           {strconv.Itoa(first.prefix.mhLen)},
			"pin":             {"false"},
			"allow-big-block": {"true"},
		}
	}
	resp, err := st.peer.rpc.Post(ctx, cmd, args, body, "multipart/form-data; boundary="+s.boundary)
	if err != nil {
		if car && refusesImport(err) {
			st.peer.noImport.Store(true)
			return fmt.Errorf("%w: %w", errNoImport, err)
		}
		return causeOf(ctx, err)
	}
	defer resp.Body.Close()
	r := kuborpc.NewLineReader(resp.Body)
	var stats *importStats
	for {
		line, err := r.Next()
		if err == io.EOF {
			if car {
				return st.endOfImport(resp.Trailer.Get(kuborpc.StreamErrorTrailer), start, stats)
			}
			return st.endOfResponse(resp.Trailer.Get(kuborpc.StreamErrorTrailer))
		}
		if err != nil {
			return causeOf(ctx, err)
		}
		if car {
			if stats, err = decodeImportLine(line, stats); err != nil {
				return err
			}
			continue
		}
		if err := st.ack(line); err != nil {
			return err
		}
	}
}

// ack checks one acknowledgement against the oldest unacknowledged block.
// kubo answers CIDv1 with the request's codec for every part, so only the
// multihash (and the size) are compared.
func (st *stream) ack(line []byte) error {
	var a struct {
		Key  string
		Size int64
	}
	if err := json.Unmarshal(line, &a); err != nil {
		return fmt.Errorf("cannot decode block/put acknowledgement %q: %w", line, err)
	}
	c, err := cid.Decode(a.Key)
	if err != nil {
		return fmt.Errorf("cannot decode block/put acknowledgement %q: %w", line, err)
	}
	s := st.s
	s.mu.Lock()
	if st.acked >= st.written {
		s.mu.Unlock()
		return fmt.Errorf("cannot match acknowledgement %s: no block outstanding", c)
	}
	blk := s.at(st.acked)
	if !bytes.Equal(c.Hash(), blk.mh) || a.Size != int64(len(blk.data)) {
		s.mu.Unlock()
		return fmt.Errorf("cannot match acknowledgement %s (%d bytes) with block %s (%d bytes): multihash or size differs", c, a.Size, blk.name, len(blk.data))
	}
	st.acked++
	st.since = time.Now()
	space := s.releaseLocked()
	s.mu.Unlock()
	closeSpace(space)
	s.f.cfg.metrics.PeerAcked(st.peer.Name, 1, a.Size)
	return nil
}

// causeOf returns ctx's cause if ctx ended (a stall, a stop, the caller's
// cancellation) instead of the I/O error that the ending produced.
func causeOf(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// endOfResponse checks a response that ended: kubo must have read the
// whole body and acknowledged every block, without a stream error.
func (st *stream) endOfResponse(streamErr string) error {
	if streamErr != "" {
		return fmt.Errorf("block/put failed: kubo reported: %s", streamErr)
	}
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.bodyDone || st.acked != st.written {
		return fmt.Errorf("block/put answer ended early: %d of %d blocks acknowledged", st.acked, st.written)
	}
	return nil
}

// watch is the session's watchdog: it cancels the request of every peer
// that has owed an acknowledgement for StallTimeout (then retried), and
// drops peers that lag (see lagging).
func (s *Session) watch() {
	cfg := &s.f.cfg
	stall := cfg.stallTimeout
	t := time.NewTicker(min(max(min(stall, cfg.lagTimeout)/8, 10*time.Millisecond), time.Second))
	defer t.Stop()
	type stalled struct {
		cancel context.CancelCauseFunc
		err    error
	}
	for {
		select {
		case <-s.streamsDone:
			return
		case now := <-t.C:
			var cancels []stalled
			s.mu.Lock()
			for _, st := range s.streams {
				if st.cancel != nil && st.owed() && now.Sub(st.since) >= stall {
					cancels = append(cancels, stalled{st.cancel, fmt.Errorf("%w: no acknowledgement for %v (%d of %d blocks acknowledged)", ErrStalled, stall, st.acked, st.written)})
					st.cancel = nil
				}
			}
			lag := s.laggingLocked(now)
			s.mu.Unlock()
			for _, c := range cancels {
				c.cancel(c.err)
			}
			for _, st := range lag {
				st.dropLagging()
			}
		}
	}
}

// laggingLocked returns the live peers to drop because the quorum does not
// need them (issue 11: a SIGSTOPped peer held every add for StallTimeout
// times its retries): a peer lags when it holds up the session, i.e. a Put
// waits for room and the peer is the furthest behind, or Close waits for
// it, and it owes an acknowledgement with no progress for LagTimeout.
// They are dropped only if the other live peers still make minOK.
func (s *Session) laggingLocked(now time.Time) []*stream {
	if s.err != nil || (s.waiting == 0 && !s.closing) {
		return nil
	}
	var lag []*stream
	live := 0
	for _, st := range s.streams {
		if st.err != nil {
			continue
		}
		live++
		holding := s.closing || st.acked == s.base
		if holding && st.owed() && now.Sub(st.since) >= s.f.cfg.lagTimeout {
			lag = append(lag, st)
		}
	}
	if live-len(lag) < s.minOK {
		return nil
	}
	return lag
}

// dropLagging drops st's peer for lagging and ends its request; its
// goroutine then returns without a retry.
func (st *stream) dropLagging() {
	s := st.s
	s.mu.Lock()
	cancel := st.cancel
	s.stats.Lagging++
	acked, written := st.acked, st.written
	s.mu.Unlock()
	err := fmt.Errorf("%w: %w: no progress for %v while the other peers made the quorum (%d of %d blocks acknowledged)",
		ErrPeerUnavailable, ErrLagging, s.f.cfg.lagTimeout, acked, written)
	st.drop(err)
	if cancel != nil {
		cancel(err)
	}
}
