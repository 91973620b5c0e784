package blockfanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/kuborpc"
)

// smallBlock: blocks up to this size are copied behind their part header
// (into the request's reused header buffer) so that header and block go
// out in one write, one HTTP chunk and one system call; larger blocks are
// written from the shared slice itself.
const smallBlock = 4 << 10

// writePiece: larger blocks are written in pieces of at most this size,
// and each piece written counts as progress for the stall clock, so that a
// big block on a slow link is not taken for a stall.
const writePiece = 1 << 20

// errRequestAborted stops the body writer of a block/put request that its
// stream has already given up (it is being retried or was dropped).
var errRequestAborted = errors.New("blockfanout: block/put request aborted")

// block is one block of a session. One block is shared by every peer of
// the session and never copied or modified.
type block struct {
	name   string // the CID as text: the part's filename
	mh     []byte // the multihash that acknowledgements must carry
	data   []byte
	codec  uint64
	prefix prefix
}

// prefix is what kubo hashes a block/put part with: the query's mhtype and
// mhlen apply to every part of a request, so a request only carries blocks
// of one prefix.
type prefix struct {
	mhType uint64
	mhLen  int
}

// Stats describes a session's use of memory; see Session.Stats.
type Stats struct {
	Blocks          int64 // blocks accepted by Put (identity CIDs and immediate repeats are dropped)
	Bytes           int64 // their bytes
	QueuedBlocks    int   // blocks held now: put, and not yet acknowledged by every live peer
	QueuedBytes     int64 // their bytes
	MaxQueuedBlocks int   // most blocks ever held at once
	MaxQueuedBytes  int64 // most bytes ever held at once
	PutWaits        int64 // Puts that had to wait for a peer's queue (backpressure)
	Requests        int64 // block/put requests opened, over all peers
}

// Session streams the blocks of one add to a set of peers. It implements
// ingest.Sink (but not ingest.CopyingSink: it keeps the blocks it is
// given). Create it with Fanout.NewSession, call Put for each block and
// Close once at the end.
//
// Every peer gets one block/put request (spec §4.7), open for the whole
// session and written as blocks arrive, plus one more each time the
// multihash function or length changes and each time the peer is retried.
// The blocks of a session form a log; each peer's queue is the part of the
// log it has not acknowledged. Put appends to the log and waits while any
// live peer's queue is full (Config.QueueBlocks, Config.QueueBytes), so a
// session holds at most one queue's worth of blocks however many peers it
// has.
//
// Ownership: Put takes over data. The session neither copies nor modifies
// it, and keeps it until every peer still in the session has acknowledged
// the block (a peer being retried needs its unacknowledged blocks again);
// then it drops its reference. The caller must not modify data after Put,
// even if Put fails.
type Session struct {
	f        *Fanout
	ctx      context.Context // ends the session's requests when canceled
	cancel   context.CancelCauseFunc
	unhook   func() bool // undoes the context.AfterFunc that aborts on Stop
	minOK    int
	streams  []*stream
	boundary string
	wg       sync.WaitGroup // stream goroutines and the watchdog

	streamsDone chan struct{} // closed when every stream goroutine returned

	mu      sync.Mutex // guards the fields below and the stream fields marked so
	ring    []*block   // block seq lives in ring[seq%len(ring)] while held
	base    uint64     // oldest block held: the lowest ack count of live peers
	end     uint64     // blocks put so far
	held    int64      // bytes of the blocks held
	space   chan struct{}
	last    cid.Cid // the last block put, to drop immediate repeats
	closing bool    // Close was called: writers end their requests
	closed  bool    // Close finished waiting: errors no longer change
	running int     // stream goroutines still running
	err     error   // why the session failed; set once
	stats   Stats
}

// stream is one peer of a session.
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

// NewSession starts streaming to peers (usually from Allocate). The session
// fails, and Put and Close return ErrQuorum, as soon as fewer than minOK
// peers remain; minOK <= 0 means every peer. Peers that the last liveness
// check found down are dropped at once with ErrPeerUnavailable, so a
// session whose peers are all down fails on its first Put, without a
// request.
//
// ctx bounds the whole session: canceling it aborts every request (Close
// must still be called). Stop aborts running sessions too.
func (f *Fanout) NewSession(ctx context.Context, peers []*Peer, minOK int) *Session {
	s := &Session{
		f:           f,
		minOK:       minOK,
		boundary:    multipart.NewWriter(io.Discard).Boundary(),
		ring:        make([]*block, f.cfg.queueBlocks),
		space:       make(chan struct{}),
		streamsDone: make(chan struct{}),
	}
	if s.minOK <= 0 {
		s.minOK = len(peers)
	}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	s.unhook = context.AfterFunc(f.stopCtx, func() {
		s.fail(fmt.Errorf("cannot replicate blocks: %w", ErrStopped))
	})

	seen := make(map[*Peer]bool, len(peers))
	for _, p := range peers {
		st := &stream{s: s, peer: p, wake: make(chan struct{}, 1)}
		if seen[p] {
			st.err = kuborpc.Permanent(fmt.Errorf("cannot put blocks to peer %s: peer given twice", p))
		} else if down, why := f.knownDown(p); down {
			st.err = fmt.Errorf("cannot put blocks to peer %s: %w: %s", p, ErrPeerUnavailable, why)
		}
		seen[p] = true
		s.streams = append(s.streams, st)
	}

	s.mu.Lock()
	if len(peers) == 0 {
		s.err = fmt.Errorf("cannot replicate blocks: %w: no peers given", ErrQuorum)
	} else if s.minOK > len(peers) {
		s.err = fmt.Errorf("cannot replicate blocks: %w: need %d peers, given %d", ErrQuorum, s.minOK, len(peers))
	} else if s.liveLocked() < s.minOK {
		s.err = s.quorumErrorLocked()
	}
	fail := s.err != nil
	if !fail {
		for _, st := range s.streams {
			if st.err == nil {
				s.running++
			}
		}
	}
	s.mu.Unlock()
	if fail || s.running == 0 {
		close(s.streamsDone)
		return s
	}

	for _, st := range s.streams {
		if st.err == nil {
			s.goTracked(st.run, func() { st.exit() })
		}
	}
	s.goTracked(s.watch, nil)
	return s
}

// goTracked runs fn in a goroutine tracked by s.wg and Fanout.Stop. If the
// Fanout is stopped, it fails the session and runs onRefused instead.
func (s *Session) goTracked(fn, onRefused func()) {
	s.wg.Add(1)
	ok := s.f.goTracked(func() {
		defer s.wg.Done()
		fn()
	})
	if !ok {
		s.wg.Done()
		s.fail(fmt.Errorf("cannot replicate blocks: %w", ErrStopped))
		if onRefused != nil {
			onRefused()
		}
	}
}

// Put queues a block for every peer of the session and returns when it is
// queued, not when it is stored: Close reports that. Put waits while any
// live peer's queue is full (backpressure) or until ctx ends. Blocks whose
// CID has an identity multihash are not sent (kubo does not store them),
// and a block with the same CID as the previous one is dropped (the
// importer may emit a node twice in a row). Put returns the session's
// error, wrapping ErrQuorum, once too few peers remain. Put may be called
// concurrently; blocks are sent in the order Put accepts them. See Session
// for who owns data.
func (s *Session) Put(ctx context.Context, c cid.Cid, data []byte) error {
	pre := c.Prefix()
	if pre.MhType == mh.IDENTITY {
		return nil
	}
	if _, ok := mh.Codes[pre.MhType]; !ok {
		return fmt.Errorf("cannot put block %s: unknown multihash function 0x%x", c, pre.MhType)
	}
	size := int64(len(data))
	waited := false
	s.mu.Lock()
	for {
		if err := s.errLocked(); err != nil {
			s.mu.Unlock()
			return err
		}
		if s.closing {
			s.mu.Unlock()
			return fmt.Errorf("cannot put block %s: session closed", c)
		}
		if s.end > 0 && c.Equals(s.last) {
			s.mu.Unlock()
			return nil
		}
		n := s.end - s.base
		if n < uint64(len(s.ring)) && (n < 2 || s.held+size <= s.f.cfg.queueBytes) {
			break
		}
		if !waited {
			waited = true
			s.stats.PutWaits++
		}
		space := s.space
		s.mu.Unlock()
		select {
		case <-space:
		case <-s.ctx.Done():
		case <-ctx.Done():
			return fmt.Errorf("cannot put block %s: %w", c, ctx.Err())
		}
		s.mu.Lock()
	}
	s.ring[s.end%uint64(len(s.ring))] = &block{
		name:   c.String(),
		mh:     c.Hash(),
		data:   data,
		codec:  pre.Codec,
		prefix: prefix{mhType: pre.MhType, mhLen: pre.MhLength},
	}
	s.end++
	s.held += size
	s.last = c
	s.stats.Blocks++
	s.stats.Bytes += size
	s.stats.MaxQueuedBlocks = max(s.stats.MaxQueuedBlocks, int(s.end-s.base))
	s.stats.MaxQueuedBytes = max(s.stats.MaxQueuedBytes, s.held)
	wakes := s.wakesLocked()
	s.mu.Unlock()
	notify(wakes)
	return nil
}

// Close ends the session: it waits until every live peer has acknowledged
// every block and its block/put request has ended, or until ctx ends (then
// it aborts the session). Result lists the peers that acknowledged every
// block and the errors of the others. The error wraps ErrQuorum, naming
// each failed peer and its error, if fewer than minOK peers acknowledged
// every block; it is the session's error if the session was aborted.
// Close must be called exactly once, also after a failed Put.
func (s *Session) Close(ctx context.Context) (Result, error) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return Result{}, errors.New("cannot close session: already closed")
	}
	s.closing = true
	wakes := s.wakesLocked()
	s.mu.Unlock()
	notify(wakes)

	select {
	case <-s.streamsDone:
	case <-ctx.Done():
		s.fail(fmt.Errorf("cannot close session: %w", ctx.Err()))
		<-s.streamsDone
	}
	s.wg.Wait()
	s.unhook()

	s.mu.Lock()
	err := s.errLocked()
	s.closed = true
	res := Result{Failed: map[string]error{}}
	for _, st := range s.streams {
		switch {
		case st.complete:
			res.OK = append(res.OK, st.peer)
		case st.err != nil:
			res.Failed[st.peer.Name] = st.err
		default:
			res.Failed[st.peer.Name] = fmt.Errorf("cannot put blocks to peer %s: %w", st.peer, cmpOr(err, errIncomplete))
		}
	}
	if err == nil && len(res.OK) < s.minOK {
		s.err = s.quorumErrorLocked()
		err = s.err
	}
	s.mu.Unlock()
	s.cancel(nil)
	return res, err
}

// errIncomplete explains a peer that neither finished nor failed, which
// only an aborted session leaves behind.
var errIncomplete = errors.New("session ended before the peer acknowledged every block")

func cmpOr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

// Stats returns the session's counters. MaxQueuedBytes never exceeds
// max(Config.QueueBytes, two blocks).
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.QueuedBlocks = int(s.end - s.base)
	st.QueuedBytes = s.held
	return st
}

// at returns block seq, which must be held.
func (s *Session) at(seq uint64) *block {
	return s.ring[seq%uint64(len(s.ring))]
}

// wakesLocked returns the wake channels of every stream, for notify.
func (s *Session) wakesLocked() []chan struct{} {
	wakes := make([]chan struct{}, 0, len(s.streams))
	for _, st := range s.streams {
		if st.err == nil {
			wakes = append(wakes, st.wake)
		}
	}
	return wakes
}

// notify signals each channel without blocking. Callers collect the
// channels under s.mu and notify after unlocking.
func notify(chs []chan struct{}) {
	for _, ch := range chs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// errLocked returns the session's error. A session whose context ended
// (NewSession's ctx) fails with the context's cause.
func (s *Session) errLocked() error {
	if s.err == nil && !s.closed && s.ctx.Err() != nil {
		s.err = fmt.Errorf("cannot replicate blocks: session aborted: %w", context.Cause(s.ctx))
	}
	return s.err
}

func (s *Session) liveLocked() int {
	n := 0
	for _, st := range s.streams {
		if st.err == nil {
			n++
		}
	}
	return n
}

func (s *Session) quorumErrorLocked() error {
	var failed []string
	for _, st := range s.streams {
		if st.err != nil {
			failed = append(failed, st.err.Error())
		}
	}
	return fmt.Errorf("cannot replicate blocks: %w: %d of %d peers left, need %d; failed: %s",
		ErrQuorum, s.liveLocked(), len(s.streams), s.minOK, strings.Join(failed, "; "))
}

// releaseLocked drops the blocks every live peer has acknowledged and
// returns the channel to close (after unlocking) if that made room.
func (s *Session) releaseLocked() chan struct{} {
	base := s.end
	for _, st := range s.streams {
		if st.err == nil {
			base = min(base, st.acked)
		}
	}
	if base <= s.base {
		return nil
	}
	for ; s.base < base; s.base++ {
		i := s.base % uint64(len(s.ring))
		s.held -= int64(len(s.ring[i].data))
		s.ring[i] = nil
	}
	return s.newSpaceLocked()
}

// newSpaceLocked replaces s.space and returns the old one, to be closed
// after unlocking: that wakes every Put waiting for room.
func (s *Session) newSpaceLocked() chan struct{} {
	old := s.space
	s.space = make(chan struct{})
	return old
}

func closeSpace(ch chan struct{}) {
	if ch != nil {
		close(ch)
	}
}

// fail records err as the session's error unless it has one (or Close has
// finished), wakes every waiter and cancels every request.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err != nil || s.closed {
		s.mu.Unlock()
		return
	}
	s.err = err
	space := s.newSpaceLocked()
	wakes := s.wakesLocked()
	s.mu.Unlock()
	closeSpace(space)
	notify(wakes)
	s.cancel(err)
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
		err := st.request(start, gen)
		if err == nil {
			continue
		}
		if s.ctx.Err() != nil {
			return // the session failed or was aborted; its error says why
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

// request sends the blocks from start on in one block/put request, until
// the session is closed or a block with another prefix comes, and checks
// every acknowledgement. It returns nil once every block it sent is
// acknowledged and kubo ended the response without error.
func (st *stream) request(start, gen uint64) error {
	s := st.s
	ctx, cancel := context.WithCancelCause(s.ctx)
	s.mu.Lock()
	st.cancel = cancel
	first := s.at(start)
	wake := st.wake
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		st.open, st.cancel = false, nil
		s.mu.Unlock()
		cancel(nil)
	}()

	body := &putBody{
		st: st, gen: gen, ctx: ctx, wake: wake, boundary: s.boundary,
		prefix: first.prefix, start: start, next: start,
	}
	args := url.Values{
		"cid-codec":       {multicodec.Code(first.codec).String()},
		"mhtype":          {mh.Codes[first.prefix.mhType]},
		"mhlen":           {strconv.Itoa(first.prefix.mhLen)},
		"pin":             {"false"},
		"allow-big-block": {"true"},
	}
	resp, err := st.peer.rpc.Post(ctx, "block/put", args, body, "multipart/form-data; boundary="+s.boundary)
	if err != nil {
		return causeOf(ctx, err)
	}
	defer resp.Body.Close()
	r := kuborpc.NewLineReader(resp.Body)
	for {
		line, err := r.Next()
		if err == io.EOF {
			return st.endOfResponse(resp.Trailer.Get(kuborpc.StreamErrorTrailer))
		}
		if err != nil {
			return causeOf(ctx, err)
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
// that has owed an acknowledgement for StallTimeout (then retried).
func (s *Session) watch() {
	stall := s.f.cfg.stallTimeout
	t := time.NewTicker(min(max(stall/8, 10*time.Millisecond), time.Second))
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
			s.mu.Unlock()
			for _, c := range cancels {
				c.cancel(c.err)
			}
		}
	}
}

// putBody is the multipart body of one block/put request. The transport's
// writer goroutine reads it (WriteTo, or Read with other transports); it
// takes blocks from the session's log as they come and ends the body when
// the session is closed or the next block has another prefix.
type putBody struct {
	st       *stream
	gen      uint64
	ctx      context.Context
	wake     chan struct{}
	boundary string
	prefix   prefix
	start    uint64 // first block of the request
	next     uint64 // next block to hand over

	hdr        []byte    // part header (and small block) being written
	segs       [][]byte  // what remains to be written of the last hand-over
	arr        [2][]byte // backing array of segs
	eof        bool
	unreported int // bytes Read since the last progress report
}

// advance hands over the next part (or the closing delimiter), waiting for
// a block if needed. Whatever it handed over before has been written.
func (b *putBody) advance() error {
	st, s := b.st, b.st.s
	s.mu.Lock()
	for {
		if st.gen != b.gen || !st.open || st.err != nil {
			s.mu.Unlock()
			return errRequestAborted
		}
		wasOwed := st.owed()
		if st.busy {
			st.since = time.Now() // what was handed over is written
		}
		st.started, st.busy = true, false
		var blk *block
		if b.next < s.end {
			blk = s.at(b.next)
		}
		if blk != nil && blk.prefix == b.prefix {
			b.hdr = b.hdr[:0]
			if b.next > b.start {
				b.hdr = append(b.hdr, "\r\n"...)
				st.ackable = b.next // this delimiter ends the previous part
			}
			b.hdr = append(b.hdr, "--"...)
			b.hdr = append(b.hdr, b.boundary...)
			b.hdr = append(b.hdr, "\r\nContent-Disposition: form-data; name=\"file\"; filename=\""...)
			b.hdr = append(b.hdr, blk.name...)
			b.hdr = append(b.hdr, "\"\r\nContent-Type: application/octet-stream\r\n\r\n"...)
			b.segs = b.arr[:0]
			if len(blk.data) <= smallBlock {
				b.hdr = append(b.hdr, blk.data...)
				b.segs = append(b.segs, b.hdr)
			} else {
				b.segs = append(b.segs, b.hdr, blk.data)
			}
			b.next++
			st.written = b.next
			st.busy = true
			st.touch(wasOwed)
			s.mu.Unlock()
			return nil
		}
		if blk != nil || s.closing {
			// The end of the session, or of this prefix: close the body;
			// the next request starts at b.next.
			b.hdr = append(b.hdr[:0], "\r\n--"...)
			b.hdr = append(b.hdr, b.boundary...)
			b.hdr = append(b.hdr, "--\r\n"...)
			b.segs = append(b.arr[:0], b.hdr)
			b.eof = true
			st.ackable = b.next
			st.bodyDone = true
			st.busy = true
			st.touch(wasOwed)
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-b.wake:
		case <-b.ctx.Done():
			return context.Cause(b.ctx)
		}
		s.mu.Lock()
	}
}

// progress restarts the stall clock after a piece of a large block was
// written.
func (b *putBody) progress() {
	s := b.st.s
	s.mu.Lock()
	if b.st.gen == b.gen {
		b.st.since = time.Now()
	}
	s.mu.Unlock()
}

// WriteTo writes the body to w (the transport's chunked writer): each part
// header is one write and each large block one write per MiB, straight
// from the block's slice.
func (b *putBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		for len(b.segs) > 0 {
			seg := b.segs[0]
			piece := seg[:min(len(seg), writePiece)]
			m, err := w.Write(piece)
			n += int64(m)
			if err != nil {
				return n, err
			}
			if len(piece) < len(seg) {
				b.segs[0] = seg[len(piece):]
				b.progress()
				continue
			}
			b.segs = b.segs[1:]
		}
		if b.eof {
			return n, nil
		}
		if err := b.advance(); err != nil {
			return n, err
		}
	}
}

// Read implements io.Reader for transports that do not use WriteTo.
func (b *putBody) Read(p []byte) (int, error) {
	for len(b.segs) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		if err := b.advance(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.segs[0])
	b.segs[0] = b.segs[0][n:]
	if len(b.segs[0]) == 0 {
		b.segs = b.segs[1:]
	}
	if b.unreported += n; b.unreported >= writePiece {
		b.unreported = 0
		b.progress()
	}
	return n, nil
}

// Close implements io.Closer. The transport may call it concurrently with
// WriteTo; ending a request is the stream's business (its context).
func (b *putBody) Close() error { return nil }
