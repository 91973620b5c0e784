package blockfanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/kuborpc"
)

// importDepth is how many dag/import requests one peer may have open at
// once: the next segment streams while kubo stores the previous one and
// answers (issue 12: with one at a time, each peer waited idle for every
// answer). block/put has one request open at a time: it streams the whole
// add and is acknowledged part by part.
const importDepth = 2

// stream is one peer of a session. Its requests run on importDepth lanes
// (goroutines running run), which share the stream's state below; all of
// it changes under s.mu.
//
// Stream states:
//
//	ready    ──waitWork: a block to send, room for a request──▶ ready with
//	           one more open request (the lane that opened it runs it)
//	ready    ──a request of the current epoch failed──▶ retrying (epoch++,
//	           next = acked, every other open request aborted)
//	retrying ──the failing lane's backoff ended──▶ ready (attempts counted)
//	ready    ──Close called, acked == s.end, no open request──▶ complete (final)
//	any      ──retries spent, permanent error, lagging (watch), known down
//	           at NewSession, or the session failed──▶ dropped: err set (final)
//
// Room for a request: with dag/import (and once the peer has answered one
// import, Peer.imported) fewer than importDepth open and the newest one's
// body ended; a new segment starts at next. With block/put, none open; it
// starts at acked (== next). A request whose gen is not the epoch any more
// is aborted: its writer stops with errRequestAborted, its answer is
// ignored and its failure is not counted (the request that failed first
// is). Requests of one epoch cover consecutive blocks: [acked, next) is
// the open requests' blocks, oldest first.
//
// Per request, the body writer (transport goroutine) moves written,
// ackable and next forward and sets started, busy and bodyDone; the lane
// moves acked forward: per part for block/put, per segment for dag/import,
// in order. A segment answered before an older one (with matching stats)
// is remembered in early and acknowledged when the older one is; it still
// counts against importDepth until then.
type stream struct {
	s    *Session
	peer *Peer

	// Guarded by s.mu.
	acked    uint64     // blocks [0, acked) acknowledged by the peer
	next     uint64     // first block not handed to a request of this epoch
	epoch    uint64     // bumped when a request fails: older requests are aborted
	open     []*request // open requests, oldest first; at most importDepth
	early    []*request // segments answered before an older one still open, oldest first
	retrying bool       // a lane waits out a backoff: no request opens
	attempts int        // failed requests
	since    time.Time
	wake     chan struct{} // closed and replaced (wakeLocked) on any change lanes or writers wait for
	err      error         // set when the peer is dropped from the session
	complete bool          // acknowledged every block; its lanes return
}

// request is one open request of a stream (see stream for who moves
// what). Guarded by s.mu.
type request struct {
	gen      uint64 // the stream's epoch when it opened
	start    uint64 // first block of the request
	written  uint64 // blocks [start, written) handed to the body writer
	ackable  uint64 // blocks [start, ackable) followed by a delimiter handed over, so kubo can acknowledge them
	started  bool   // the body writer has run
	busy     bool   // the body writer is writing bytes it was handed
	bodyDone bool   // the closing delimiter was handed over
	answered bool   // dag/import: its stats matched
	done     bool   // its lane returned from it
	car      bool   // dag/import (else block/put)
	cancel   context.CancelCauseFunc
}

// owed reports whether r's peer owes an acknowledgement for it (or has not
// taken bytes it was handed). A request waiting for its caller's next
// block is owed nothing, since kubo acknowledges a block only once the
// next part (or the end) begins.
func (r *request) owed(acked uint64) bool {
	return !r.done && !r.answered && (!r.started || r.busy || acked < r.ackable)
}

// owed reports whether the peer owes anything on any open request: only
// then does the stall clock run, and an acknowledgement or a completed
// write restarts it.
func (st *stream) owed() bool {
	for _, r := range st.open {
		if r.gen == st.epoch && r.owed(st.acked) {
			return true
		}
	}
	return false
}

// touch restarts the stall clock if the peer just began to owe something.
func (st *stream) touch(wasOwed bool) {
	if !wasOwed && st.owed() {
		st.since = time.Now()
	}
}

// wakeLocked replaces st.wake and returns the old channel, which the
// caller closes after unlocking: that wakes every lane and body writer of
// st waiting for a change.
func (st *stream) wakeLocked() chan struct{} {
	old := st.wake
	st.wake = make(chan struct{})
	return old
}

// abortLocked aborts every open request of st (a new epoch: their writers
// stop, their answers are ignored) and returns their cancel functions, to
// call after unlocking.
func (st *stream) abortLocked() []context.CancelCauseFunc {
	st.epoch++
	st.next, st.early = st.acked, nil
	var cancels []context.CancelCauseFunc
	for _, r := range st.open {
		if r.cancel != nil {
			cancels = append(cancels, r.cancel)
			r.cancel = nil
		}
	}
	return cancels
}

func cancelAll(cancels []context.CancelCauseFunc, err error) {
	for _, c := range cancels {
		c(err)
	}
}

// drop removes st's peer from the session for err and ends its requests.
// If too few peers are left, the session fails with ErrQuorum at once:
// healthy peers are not waited for.
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
	cancels := st.abortLocked()
	wake := st.wakeLocked()
	space := s.releaseLocked()
	s.mu.Unlock()
	close(wake)
	cancelAll(cancels, err)
	closeSpace(space)
	s.f.recordErr(st.peer, err)
	if quorum != nil {
		s.fail(quorum)
	}
}

// exit marks a lane of st as returned; the last lane of the session
// closes streamsDone.
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

// run is one lane of st: it opens a request whenever the peer has blocks
// to take and room for one, and retries failed requests from the first
// block the peer has not acknowledged, until the session is closed and
// every block acknowledged, the peer is dropped, or the session fails.
func (st *stream) run() {
	defer st.exit()
	s, cfg := st.s, &st.s.f.cfg
	for {
		r, ok := st.waitWork()
		if !ok {
			return
		}
		began := time.Now()
		err := st.request(r)
		attempts, first := st.finish(r, err)
		cfg.metrics.PeerRequest(st.peer.Name, time.Since(began), first && s.ctx.Err() == nil)
		if !first {
			continue // succeeded, or aborted because another request failed first
		}
		if s.ctx.Err() != nil || st.isDropped() {
			return // the session failed or was aborted, or the peer dropped; its error says why
		}
		if errors.Is(err, errNoImport) {
			s.f.recordErr(st.peer, err)
			st.retried()
			continue // at once, with block/put; not a failure of the peer
		}
		if kuborpc.IsPermanent(err) {
			st.drop(fmt.Errorf("%w: %w", ErrPeerUnavailable, err))
			return
		}
		if attempts > cfg.maxRetries {
			st.drop(fmt.Errorf("%w: gave up after %d attempts: %w", ErrPeerUnavailable, attempts, err))
			return
		}
		d := kuborpc.Backoff(attempts, err)
		if d > cfg.stallTimeout {
			st.drop(fmt.Errorf("%w: asked to retry after %v, beyond the stall timeout (%v): %w", ErrPeerUnavailable, d, cfg.stallTimeout, err))
			return
		}
		s.f.recordErr(st.peer, err)
		if !kuborpc.Sleep(s.ctx, d) {
			return
		}
		st.retried()
	}
}

// finish closes r after its lane returned from it with err. If r failed
// and is of the current epoch, it is the first failure: finish aborts the
// other open requests, moves the stream to retrying (resending from
// acked) and counts the attempt (not for errNoImport); first reports that.
func (st *stream) finish(r *request, err error) (attempts int, first bool) {
	s := st.s
	s.mu.Lock()
	r.done = true
	st.open = slices.DeleteFunc(st.open, func(o *request) bool { return o == r })
	cancel := r.cancel
	r.cancel = nil
	var cancels []context.CancelCauseFunc
	if err != nil && r.gen == st.epoch && st.err == nil {
		first = true
		cancels = st.abortLocked()
		st.retrying = true
		if !errors.Is(err, errNoImport) {
			st.attempts++
		}
	}
	attempts = st.attempts
	wake := st.wakeLocked()
	s.mu.Unlock()
	close(wake)
	if cancel != nil {
		cancel(nil)
	}
	cancelAll(cancels, errRequestAborted)
	return attempts, first
}

// retried ends the retrying state: requests open again.
func (st *stream) retried() {
	s := st.s
	s.mu.Lock()
	st.retrying = false
	wake := st.wakeLocked()
	s.mu.Unlock()
	close(wake)
}

// isDropped reports whether st's peer was dropped from the session.
func (st *stream) isDropped() bool {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	return st.err != nil
}

// roomLocked reports whether st may open a request now (see stream).
func (st *stream) roomLocked() bool {
	s := st.s
	if st.retrying || st.next >= s.end {
		return false
	}
	if len(st.open) == 0 {
		return true
	}
	last := st.open[len(st.open)-1]
	// Answered segments not yet acknowledged count: a third segment
	// answered early would otherwise be forgotten (a hang, 4 GiB to 3 kubos).
	return last.car && last.bodyDone && len(st.open)+len(st.early) < importDepth &&
		st.peer.imported.Load() && !st.peer.noImport.Load()
}

// waitWork waits until the peer has a block to take and room for a
// request, and opens one (from next: after a failure, the first
// unacknowledged block), or reports false when the lane is done: every
// block acknowledged after Close, the peer dropped, or the session failed.
func (st *stream) waitWork() (*request, bool) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.errLocked() != nil || st.err != nil || st.complete:
			return nil, false
		case st.roomLocked():
			wasOwed := st.owed()
			r := &request{gen: st.epoch, start: st.next, written: st.next, ackable: st.next, car: !st.peer.noImport.Load()}
			st.open = append(st.open, r)
			if !wasOwed {
				st.since = time.Now()
			}
			s.stats.Requests++
			if r.car {
				s.stats.Imports++
			}
			return r, true
		case s.closing && !st.retrying && st.acked == s.end && len(st.open) == 0:
			st.complete = true
			close(st.wakeLocked()) // the other lanes return too
			return nil, false
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

// request sends r's blocks in one request: a dag/import segment, or a
// block/put until the session is closed or a block with another prefix
// comes. It checks every acknowledgement and returns nil once every block
// it sent is acknowledged and kubo ended the response without error.
func (st *stream) request(r *request) error {
	s := st.s
	ctx, cancel := context.WithCancelCause(s.ctx)
	s.mu.Lock()
	if r.gen != st.epoch {
		s.mu.Unlock()
		cancel(nil)
		return errRequestAborted // aborted between waitWork and here
	}
	r.cancel = cancel
	first := s.at(r.start)
	s.mu.Unlock()
	defer cancel(nil)

	body := &putBody{
		st: st, r: r, ctx: ctx, boundary: s.boundary,
		prefix: first.prefix, car: r.car, start: r.start, next: r.start,
	}
	cmd, args := "dag/import", importArgs
	if !r.car {
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
		if r.car && refusesImport(err) {
			st.peer.noImport.Store(true)
			return fmt.Errorf("%w: %w", errNoImport, err)
		}
		return causeOf(ctx, err)
	}
	defer resp.Body.Close()
	lr := kuborpc.NewLineReader(resp.Body)
	var stats *importStats
	for {
		line, err := lr.Next()
		if err == io.EOF {
			if r.car {
				return st.endOfImport(r, resp.Trailer.Get(kuborpc.StreamErrorTrailer), stats)
			}
			return st.endOfResponse(r, resp.Trailer.Get(kuborpc.StreamErrorTrailer))
		}
		if err != nil {
			return causeOf(ctx, err)
		}
		if r.car {
			if stats, err = decodeImportLine(line, stats); err != nil {
				return err
			}
			continue
		}
		if err := st.ack(r, line); err != nil {
			return err
		}
	}
}

// ack checks one acknowledgement against the oldest unacknowledged block.
// kubo answers CIDv1 with the request's codec for every part, so only the
// multihash (and the size) are compared.
func (st *stream) ack(r *request, line []byte) error {
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
	if r.gen != st.epoch {
		s.mu.Unlock()
		return errRequestAborted
	}
	if st.acked >= r.written {
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
func (st *stream) endOfResponse(r *request, streamErr string) error {
	if streamErr != "" {
		return fmt.Errorf("block/put failed: kubo reported: %s", streamErr)
	}
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.gen != st.epoch {
		return errRequestAborted
	}
	if !r.bodyDone || st.acked != r.written {
		return fmt.Errorf("block/put answer ended early: %d of %d blocks acknowledged", st.acked, r.written)
	}
	return nil
}
