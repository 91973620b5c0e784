package blockfanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"strings"
	"sync"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/kuborpc"
)

// block is one block of a session. One block is shared by every peer of
// the session and never copied or modified.
type block struct {
	name   string // the CID as text: the part's filename
	key    string // the CID's binary form: a CAR section's CID
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
	Requests        int64 // requests opened (block/put and dag/import), over all peers
	Imports         int64 // of which dag/import requests
	Lagging         int64 // peers dropped because they held Put (or Close) while the quorum did not need them
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
	waiting int     // Puts waiting for room: dag/import writers end their segments
	closed  bool    // Close finished waiting: errors no longer change
	running int     // stream goroutines still running
	err     error   // why the session failed; set once
	stats   Stats
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
		st := &stream{s: s, peer: p, wake: make(chan struct{})}
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
				s.running += importDepth
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
			for range importDepth {
				s.goTracked(st.run, func() { st.exit() })
			}
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
	// stop undoes the count of waiting Puts on every way out of the loop.
	stop := func() {
		if waited {
			s.waiting--
		}
	}
	for {
		if err := s.errLocked(); err != nil {
			stop()
			s.mu.Unlock()
			return err
		}
		if s.closing {
			stop()
			s.mu.Unlock()
			return fmt.Errorf("cannot put block %s: session closed", c)
		}
		if s.end > 0 && c.Equals(s.last) {
			stop()
			s.mu.Unlock()
			return nil
		}
		n := s.end - s.base
		if n < uint64(len(s.ring)) && (n < 2 || s.held+size <= s.f.cfg.queueBytes) {
			break
		}
		if !waited {
			waited = true
			s.waiting++
			s.stats.PutWaits++
		}
		// Writers of dag/import segments end them when a Put waits for
		// their peer (the one at base). Signalled again each time the Put
		// wakes without room: base may have moved to another peer, whose
		// writer then waits for a block that cannot come (a hang seen with
		// two segments per peer, 4 GiB to 3 kubos).
		wakes := s.wakesLocked()
		space := s.space
		s.mu.Unlock()
		notify(wakes)
		select {
		case <-space:
		case <-s.ctx.Done():
		case <-ctx.Done():
			s.mu.Lock()
			stop()
			s.mu.Unlock()
			return fmt.Errorf("cannot put block %s: %w", c, ctx.Err())
		}
		s.mu.Lock()
	}
	stop()
	s.ring[s.end%uint64(len(s.ring))] = &block{
		name:   c.String(),
		key:    c.KeyString(),
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

// wakesLocked takes the wake channel of every live stream (replacing
// it, see stream.wakeLocked), for notify.
func (s *Session) wakesLocked() []chan struct{} {
	wakes := make([]chan struct{}, 0, len(s.streams))
	for _, st := range s.streams {
		if st.err == nil {
			wakes = append(wakes, st.wakeLocked())
		}
	}
	return wakes
}

// notify closes each channel, which wakes every lane and body writer
// waiting on it. Callers take the channels under s.mu (so each is closed
// once) and notify after unlocking.
func notify(chs []chan struct{}) {
	for _, ch := range chs {
		close(ch)
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
