package blockfanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cid "github.com/ipfs/go-cid"
)

// Defaults of Config. Each bounds memory or time; see the field docs.
const (
	// DefaultQueueBlocks is the number of blocks a session keeps for a peer
	// that has not acknowledged them yet.
	DefaultQueueBlocks = 128

	// DefaultQueueBytes is the number of block bytes a session keeps for a
	// peer that has not acknowledged them yet: 64 MiB, 256 blocks of the
	// default 256 KiB chunk, so the count limit binds first for usual adds.
	DefaultQueueBytes = 64 << 20

	// DefaultStallTimeout is how long a peer may owe an acknowledgement
	// before it is failed: IPFS Cluster's pin_timeout logic, applied to
	// block/put.
	DefaultStallTimeout = 60 * time.Second

	// DefaultMaxRetries is how many transient errors a peer may have in one
	// session (or one Pin) before it is dropped.
	DefaultMaxRetries = 3

	// DefaultCheckInterval is how often every peer's /api/v0/id and
	// /api/v0/repo/stat are polled.
	DefaultCheckInterval = 5 * time.Second
)

const (
	// minBackoff and maxBackoff bound the exponential backoff between
	// retries: 100ms, 200ms, 400ms... up to 5s.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second

	// minCheckTimeout is the least time a liveness check gets, so that a
	// short CheckInterval (tests) does not fail a busy daemon.
	minCheckTimeout = 5 * time.Second

	// maxResponseLine bounds one NDJSON line read from kubo (an ack is ~90
	// bytes, an /id answer ~2 KiB), so that a broken peer cannot make us
	// buffer without limit.
	maxResponseLine = 1 << 20

	// maxErrorBody bounds how much of an error response is read.
	maxErrorBody = 64 << 10
)

// Sentinel errors. Errors returned by this package wrap them, with the peers
// and blocks concerned in the message.
var (
	// ErrNotEnoughPeers: Allocate found fewer live peers than asked for.
	ErrNotEnoughPeers = errors.New("blockfanout: not enough peers")
	// ErrQuorum: fewer than the required number of peers acknowledged
	// every block of a session (or pinned).
	ErrQuorum = errors.New("blockfanout: quorum not reached")
	// ErrPeerUnavailable: a peer is down, or was dropped from a session or
	// a pin after its retries ran out.
	ErrPeerUnavailable = errors.New("blockfanout: peer unavailable")
	// ErrStalled: a peer owed an acknowledgement for longer than
	// Config.StallTimeout. It is retried like any transient error.
	ErrStalled = errors.New("blockfanout: peer stalled")
	// ErrStopped: the Fanout was stopped.
	ErrStopped = errors.New("blockfanout: fanout stopped")
)

// PeerConfig names one IPFS (kubo) daemon.
type PeerConfig struct {
	// Name identifies the peer in logs, errors and Result.Failed, and can
	// be given to Allocate. Default: the URL. Names must be unique.
	Name string
	// URL is the base of the kubo RPC API, e.g. http://127.0.0.1:5001.
	// Required; http or https; a trailing slash is ignored.
	URL string
}

// Config configures a Fanout. The zero value works except for Peers.
type Config struct {
	// Peers are the kubo daemons blocks go to. At least one is required.
	Peers []PeerConfig

	// QueueBlocks is the most blocks a session holds for one peer until
	// that peer acknowledges them (the peer's queue, counting blocks not
	// yet written and blocks written but not acknowledged). When any peer
	// of a session is that far behind, Session.Put waits. Default 128
	// (DefaultQueueBlocks); 0 means the default. It must be at least 2:
	// kubo acknowledges a block only once the next part has begun.
	QueueBlocks int

	// QueueBytes bounds the same queue in bytes. A queue holding fewer than
	// two blocks always takes one more (kubo acknowledges a block only
	// when the next begins), so the bound is max(QueueBytes, the two
	// largest blocks). Blocks are shared by the peers of a session, so
	// this is also the bound on the bytes one session holds. Default 64
	// MiB (DefaultQueueBytes); 0 means the default.
	QueueBytes int64

	// StallTimeout fails a peer (then retried) that owes an
	// acknowledgement and has for this long neither acknowledged a block
	// nor taken a write (a block being written to a slow link is progress;
	// a peer that takes bytes but never answers is failed once its queue is
	// full); a pin whose progress does not grow for this long fails the
	// same way. Waiting for the caller's next block is not a stall. Default
	// 60s (DefaultStallTimeout); 0 means the default.
	StallTimeout time.Duration

	// MaxRetries is how many transient errors (connection refused or
	// reset, HTTP 5xx, stall, acknowledgement mismatch) one peer may have
	// in one session or one Pin before it is dropped. Retries back off
	// exponentially from 100ms to 5s, or wait as long as a Retry-After
	// header says (a Retry-After beyond StallTimeout drops the peer at
	// once). HTTP 4xx other than 408 and 429 is not retried. Default 3
	// (DefaultMaxRetries); 0 means the default, -1 means no retries.
	MaxRetries int

	// CheckInterval is how often each peer's liveness (/api/v0/id) and
	// free space (/api/v0/repo/stat?size-only=true) are polled after
	// Start. Default 5s (DefaultCheckInterval); 0 means the default.
	CheckInterval time.Duration

	// Client sends every request. It must not have a Timeout (block/put
	// streams last as long as an add) and must allow one connection per
	// session and peer. Default: a client whose transport keeps idle
	// connections to every peer for reuse (see newTransport); nil means
	// the default.
	Client *http.Client
}

// newTransport is the default transport: connections to kubo are reused
// (MaxIdleConnsPerHost), never limited in number (MaxConnsPerHost 0, one
// per session and peer), not proxied (kubo's RPC API is local or on a
// private network), and not compressed (blocks are usually incompressible).
// The 64 KiB buffers save system calls when streaming 256 KiB blocks.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
}

// config is Config with defaults applied.
type config struct {
	queueBlocks   int
	queueBytes    int64
	stallTimeout  time.Duration
	maxRetries    int
	checkInterval time.Duration
	client        *http.Client
}

// Peer is one configured kubo daemon. Name and URL never change; the kubo
// peer ID is learned from /api/v0/id (see ID).
type Peer struct {
	Name string
	URL  string // without a trailing slash

	id atomic.Pointer[string]

	// Guarded by Fanout.mu.
	checked   bool
	alive     bool
	freeSpace uint64
	addrs     []string
	lastErr   string
	lastCheck time.Time
}

// ID returns the kubo peer ID of p, "" until p has answered /api/v0/id.
func (p *Peer) ID() string {
	if id := p.id.Load(); id != nil {
		return *id
	}
	return ""
}

// String returns "name (url, id X)", the form errors use.
func (p *Peer) String() string {
	id := p.ID()
	if id == "" {
		id = "unknown"
	}
	return fmt.Sprintf("%s (%s, id %s)", p.Name, p.URL, id)
}

// PeerStatus is a snapshot of a peer's state, from the last check.
type PeerStatus struct {
	Peer      *Peer
	ID        string   // kubo peer ID, "" until known
	Alive     bool     // the last /api/v0/id check succeeded
	FreeSpace uint64   // StorageMax - RepoSize from the last repo/stat
	Addresses []string // swarm multiaddrs from /api/v0/id
	LastErr   string   // the last error seen with this peer, "" if none
	LastCheck time.Time
}

// Fanout sends blocks to a set of kubo daemons and pins on them. Create it
// with New, call Start to learn the peers' IDs and watch their liveness,
// and Stop at the end. All methods are safe for concurrent use.
type Fanout struct {
	cfg   config
	peers []*Peer

	stopCtx context.Context // canceled by Stop
	stop    context.CancelFunc
	wg      sync.WaitGroup // every goroutine this package starts

	ownClient bool // cfg.client was made by New; Stop closes its idle connections

	mu      sync.Mutex // guards started, stopped and the Peer fields marked so
	started bool
	stopped bool
}

// New validates cfg and returns a Fanout. No request is made until Start,
// NewSession, Pin or ConnectAll.
func New(cfg Config) (*Fanout, error) {
	c := config{
		queueBlocks:   cfg.QueueBlocks,
		queueBytes:    cfg.QueueBytes,
		stallTimeout:  cfg.StallTimeout,
		maxRetries:    cfg.MaxRetries,
		checkInterval: cfg.CheckInterval,
		client:        cfg.Client,
	}
	switch {
	case c.queueBlocks == 0:
		c.queueBlocks = DefaultQueueBlocks
	case c.queueBlocks < 2:
		return nil, fmt.Errorf("cannot create fanout: queue blocks (%d) cannot be lower than 2: kubo acknowledges a block only when the next one begins", c.queueBlocks)
	}
	switch {
	case c.queueBytes == 0:
		c.queueBytes = DefaultQueueBytes
	case c.queueBytes < 0:
		return nil, fmt.Errorf("cannot create fanout: queue bytes (%d) cannot be negative", c.queueBytes)
	}
	switch {
	case c.stallTimeout == 0:
		c.stallTimeout = DefaultStallTimeout
	case c.stallTimeout < 0:
		return nil, fmt.Errorf("cannot create fanout: stall timeout (%v) cannot be negative", c.stallTimeout)
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries == -1:
		c.maxRetries = 0
	case c.maxRetries < -1:
		return nil, fmt.Errorf("cannot create fanout: max retries (%d) cannot be lower than -1", c.maxRetries)
	}
	switch {
	case c.checkInterval == 0:
		c.checkInterval = DefaultCheckInterval
	case c.checkInterval < 0:
		return nil, fmt.Errorf("cannot create fanout: check interval (%v) cannot be negative", c.checkInterval)
	}
	if c.client == nil {
		c.client = &http.Client{Transport: newTransport()}
	} else if c.client.Timeout != 0 {
		return nil, fmt.Errorf("cannot create fanout: client timeout (%v) must be 0: block/put streams last as long as an add; use StallTimeout", c.client.Timeout)
	}
	if len(cfg.Peers) == 0 {
		return nil, errors.New("cannot create fanout: no peers configured")
	}

	f := &Fanout{cfg: c, ownClient: cfg.Client == nil}
	names := make(map[string]bool, len(cfg.Peers))
	urls := make(map[string]bool, len(cfg.Peers))
	for i, pc := range cfg.Peers {
		u, err := url.Parse(pc.URL)
		if err != nil {
			return nil, fmt.Errorf("cannot create fanout: cannot parse URL of peer %d (%q): %w", i, pc.URL, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("cannot create fanout: URL of peer %d (%q) must be http(s)://host:port[/path]", i, pc.URL)
		}
		base := strings.TrimRight(pc.URL, "/")
		name := pc.Name
		if name == "" {
			name = base
		}
		if names[name] {
			return nil, fmt.Errorf("cannot create fanout: peer name %q is used twice", name)
		}
		if urls[base] {
			return nil, fmt.Errorf("cannot create fanout: peer URL %q is used twice", base)
		}
		names[name], urls[base] = true, true
		f.peers = append(f.peers, &Peer{Name: name, URL: base})
	}
	f.stopCtx, f.stop = context.WithCancel(context.Background())
	return f, nil
}

// Start checks every peer once (concurrently, bounded by ctx) to learn its
// kubo peer ID, addresses and free space, then starts the goroutine that
// repeats the check every CheckInterval. Peers that do not answer are
// recorded as down and checked again; Start fails only if ctx ends first,
// if it was called before, or after Stop.
func (f *Fanout) Start(ctx context.Context) error {
	f.mu.Lock()
	switch {
	case f.stopped:
		f.mu.Unlock()
		return fmt.Errorf("cannot start fanout: %w", ErrStopped)
	case f.started:
		f.mu.Unlock()
		return errors.New("cannot start fanout: already started")
	}
	f.started = true
	f.mu.Unlock()

	f.checkAll(ctx)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cannot start fanout: %w", err)
	}
	if !f.goTracked(f.checkLoop) {
		return fmt.Errorf("cannot start fanout: %w", ErrStopped)
	}
	return nil
}

// Stop ends the liveness checks, aborts running sessions and pins (they
// fail with ErrStopped), and waits for every goroutine of f to return.
func (f *Fanout) Stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.stop()
	f.wg.Wait()
	if f.ownClient {
		f.cfg.client.CloseIdleConnections()
	}
}

// goTracked runs fn in a goroutine that Stop waits for, unless f is
// stopped (then it reports false and does not run fn). Checking stopped
// and adding to wg under mu keeps wg.Add from racing with Stop's wg.Wait.
func (f *Fanout) goTracked(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	f.wg.Go(fn)
	return true
}

func (f *Fanout) checkLoop() {
	t := time.NewTicker(f.cfg.checkInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stopCtx.Done():
			return
		case <-t.C:
			f.checkAll(f.stopCtx)
		}
	}
}

// checkAll checks every peer concurrently and returns when all are done.
func (f *Fanout) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range f.peers {
		wg.Go(func() { f.checkPeer(ctx, p) })
	}
	wg.Wait()
}

// checkPeer asks p for /api/v0/id and /api/v0/repo/stat and records the
// outcome.
func (f *Fanout) checkPeer(ctx context.Context, p *Peer) {
	ctx, cancel := context.WithTimeout(ctx, max(f.cfg.checkInterval, minCheckTimeout))
	defer cancel()
	var id struct {
		ID        string
		Addresses []string
	}
	var stat struct {
		RepoSize   uint64
		StorageMax uint64
	}
	err := f.callJSON(ctx, p, "id", nil, &id)
	if err == nil && id.ID == "" {
		err = fmt.Errorf("cannot check peer %s: /api/v0/id returned no ID", p.Name)
	}
	if err == nil {
		err = f.callJSON(ctx, p, "repo/stat", url.Values{"size-only": {"true"}}, &stat)
	}
	if ctx.Err() != nil && f.stopCtx.Err() != nil {
		return // stopping: keep the last real outcome
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	p.checked = true
	p.lastCheck = time.Now()
	if err != nil {
		p.alive = false
		p.lastErr = err.Error()
		return
	}
	if id.ID != p.ID() {
		p.id.Store(&id.ID)
	}
	p.alive = true
	p.addrs = id.Addresses
	p.freeSpace = 0
	if stat.StorageMax > stat.RepoSize {
		p.freeSpace = stat.StorageMax - stat.RepoSize
	}
	p.lastErr = ""
}

// recordErr remembers err as p's last error (shown by Peers).
func (f *Fanout) recordErr(p *Peer, err error) {
	f.mu.Lock()
	p.lastErr = err.Error()
	f.mu.Unlock()
}

// knownDown reports whether the last check found p down, with its error.
func (f *Fanout) knownDown(p *Peer) (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return p.checked && !p.alive, p.lastErr
}

// Peers returns the state of every configured peer, in configuration order.
func (f *Fanout) Peers() []PeerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]PeerStatus, len(f.peers))
	for i, p := range f.peers {
		out[i] = PeerStatus{
			Peer:      p,
			ID:        p.ID(),
			Alive:     p.alive,
			FreeSpace: p.freeSpace,
			Addresses: slices.Clone(p.addrs),
			LastErr:   p.lastErr,
			LastCheck: p.lastCheck,
		}
	}
	return out
}

// Allocate picks the peers an add goes to, as IPFS Cluster's allocator does
// (spec §4.6): first the user allocations, in their order, that name a live
// peer (by kubo peer ID or by Name; others are skipped), then the other
// live peers with the most free space first (ties in configuration order).
// It returns up to rmax peers; rmax -1 means every live peer. It fails with
// ErrNotEnoughPeers when fewer than rmin are live; rmin -1 means every live
// peer, of which there must be at least one. rmin and rmax (IPFS Cluster's
// replication factors) are both -1 or both positive with rmin <= rmax. A
// peer is live if its last check (see Start) succeeded.
func (f *Fanout) Allocate(rmin, rmax int, user []string) ([]*Peer, error) {
	switch {
	case (rmin == -1) != (rmax == -1):
		return nil, fmt.Errorf("cannot allocate peers: replication factors min %d and max %d must both be -1 or both positive", rmin, rmax)
	case rmin != -1 && (rmin < 1 || rmax < rmin):
		return nil, fmt.Errorf("cannot allocate peers: invalid replication factors min %d, max %d: want 1 <= min <= max", rmin, rmax)
	}

	type candidate struct {
		p    *Peer
		free uint64
	}
	f.mu.Lock()
	var live []candidate
	var down []string
	for _, p := range f.peers {
		if p.alive {
			live = append(live, candidate{p, p.freeSpace})
			continue
		}
		reason := p.lastErr
		if !p.checked {
			reason = "not checked yet"
		}
		down = append(down, fmt.Sprintf("%s: %s", p, reason))
	}
	f.mu.Unlock()

	need := rmin
	if rmin == -1 {
		need = 1
	}
	if len(live) < need {
		msg := fmt.Sprintf("need at least %d, %d of %d live", need, len(live), len(f.peers))
		if len(down) > 0 {
			msg += "; down: " + strings.Join(down, "; ")
		}
		return nil, fmt.Errorf("cannot allocate peers: %w: %s", ErrNotEnoughPeers, msg)
	}

	out := make([]*Peer, 0, len(live))
	picked := make(map[*Peer]bool, len(live))
	for _, u := range user {
		for _, c := range live {
			if !picked[c.p] && (u == c.p.ID() || u == c.p.Name) {
				picked[c.p] = true
				out = append(out, c.p)
				break
			}
		}
	}
	slices.SortStableFunc(live, func(a, b candidate) int {
		switch {
		case a.free > b.free:
			return -1
		case a.free < b.free:
			return 1
		}
		return 0
	})
	for _, c := range live {
		if !picked[c.p] {
			out = append(out, c.p)
		}
	}
	if rmax != -1 && len(out) > rmax {
		out = out[:rmax]
	}
	return out, nil
}

// Result tells which peers completed a session or a pin.
type Result struct {
	OK     []*Peer          // in the order given
	Failed map[string]error // by Peer.Name; each error names the peer
}

// Pin pins c recursively on every peer at once (kubo
// pin/add?arg=c&recursive=true&progress=true, spec §7.3), with name as the
// pin name if not empty. Like IPFS Cluster, it cancels a pin whose progress
// has not grown for StallTimeout; transient errors are retried as in a
// session. Result tells which peers pinned; the error is non-nil, wrapping
// ErrQuorum and naming each failed peer, unless all of them did.
func (f *Fanout) Pin(ctx context.Context, peers []*Peer, c cid.Cid, name string) (Result, error) {
	args := url.Values{"arg": {c.String()}, "recursive": {"true"}, "progress": {"true"}}
	if name != "" {
		args.Set("name", name)
	}
	errs := make([]error, len(peers))
	ctx, cancel := mergeCancel(ctx, f.stopCtx)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			if down, why := f.knownDown(p); down {
				errs[i] = fmt.Errorf("cannot pin %s on peer %s: %w: %s", c, p, ErrPeerUnavailable, why)
				return
			}
			err := f.retry(ctx, func() error { return f.pinOnce(ctx, p, c, args) })
			if err != nil {
				errs[i] = fmt.Errorf("cannot pin %s on peer %s: %w", c, p, err)
			}
		})
	}
	wg.Wait()
	res := Result{Failed: map[string]error{}}
	var failed []string
	for i, p := range peers {
		if errs[i] == nil {
			res.OK = append(res.OK, p)
			continue
		}
		res.Failed[p.Name] = errs[i]
		failed = append(failed, errs[i].Error())
		f.recordErr(p, errs[i])
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("cannot pin %s: %w: %d of %d peers pinned; %s", c, ErrQuorum, len(res.OK), len(peers), strings.Join(failed, "; "))
	}
	return res, nil
}

// pinOnce makes one pin/add call and follows its progress.
func (f *Fanout) pinOnce(ctx context.Context, p *Peer, c cid.Cid, args url.Values) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(f.cfg.stallTimeout, func() {
		cancel(fmt.Errorf("%w: pin progress did not grow for %v", ErrStalled, f.cfg.stallTimeout))
	})
	defer stall.Stop()

	resp, err := f.post(ctx, p, "pin/add", args, nil, "")
	if err != nil {
		return causeOf(ctx, err)
	}
	defer resp.Body.Close()
	r := newLineReader(resp.Body)
	progress := -1
	for {
		line, err := r.next()
		if err == io.EOF {
			if e := resp.Trailer.Get(streamErrorTrailer); e != "" {
				return fmt.Errorf("kubo reported: %s", e)
			}
			return errors.New("pin/add ended without reporting the pin")
		}
		if err != nil {
			return causeOf(ctx, err)
		}
		var ev struct {
			Progress *int
			Pins     []string
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return &permanentError{fmt.Errorf("cannot decode pin/add output %q: %w", line, err)}
		}
		if ev.Progress != nil && *ev.Progress > progress {
			progress = *ev.Progress
			stall.Reset(f.cfg.stallTimeout)
		}
		for _, s := range ev.Pins {
			if pc, err := cid.Decode(s); err == nil && bytes.Equal(pc.Hash(), c.Hash()) {
				return nil
			}
		}
		if ev.Pins != nil {
			return &permanentError{fmt.Errorf("pin/add reported pins %v, not %s", ev.Pins, c)}
		}
	}
}

// ConnectAll connects every live peer to every other one over the IPFS
// swarm (kubo swarm/connect with the addresses the other peer reported in
// /api/v0/id, loopback included), so that peers can fetch blocks from each
// other over bitswap: what IPFS Cluster relies on for local=true adds. It
// re-checks all peers first, makes one call per pair, and joins the errors
// of the pairs that failed.
func (f *Fanout) ConnectAll(ctx context.Context) error {
	f.checkAll(ctx)
	type target struct {
		p     *Peer
		addrs []string
	}
	var live []target
	for _, st := range f.Peers() {
		if st.Alive && st.ID != "" && len(st.Addresses) > 0 {
			addrs := make([]string, len(st.Addresses))
			for i, a := range st.Addresses {
				if !strings.Contains(a, "/p2p/") {
					a += "/p2p/" + st.ID
				}
				addrs[i] = a
			}
			live = append(live, target{st.Peer, addrs})
		}
	}
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for i, from := range live {
		wg.Go(func() {
			var perPeer []error
			for _, to := range live[i+1:] {
				err := f.callJSON(ctx, from.p, "swarm/connect", url.Values{"arg": to.addrs}, nil)
				if err != nil {
					perPeer = append(perPeer, fmt.Errorf("cannot connect peer %s to %s: %w", from.p, to.p, err))
				}
			}
			errs[i] = errors.Join(perPeer...)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// streamErrorTrailer carries errors that kubo hits after its output began.
const streamErrorTrailer = "X-Stream-Error"

// post sends POST p.URL/api/v0/cmd?args with body (nil for none).
func (f *Fanout) post(ctx context.Context, p *Peer, cmd string, args url.Values, body io.ReadCloser, contentType string) (*http.Response, error) {
	u := p.URL + "/api/v0/" + cmd
	if len(args) > 0 {
		u += "?" + args.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return nil, &permanentError{fmt.Errorf("cannot build %s request: %w", cmd, err)}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.cfg.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, newHTTPError(cmd, resp)
	}
	return resp, nil
}

// callJSON posts cmd and decodes its (single-object) answer into out,
// which may be nil.
func (f *Fanout) callJSON(ctx context.Context, p *Peer, cmd string, args url.Values, out any) error {
	resp, err := f.post(ctx, p, cmd, args, nil, "")
	if err != nil {
		return fmt.Errorf("cannot call %s on peer %s: %w", cmd, p.Name, err)
	}
	defer resp.Body.Close()
	line, err := newLineReader(resp.Body).next()
	if err == io.EOF {
		err = nil // swarm/connect may answer nothing
	}
	if err == nil && out != nil {
		err = json.Unmarshal(line, out)
	}
	if err == nil {
		if e := resp.Trailer.Get(streamErrorTrailer); e != "" {
			err = fmt.Errorf("kubo reported: %s", e)
		}
	}
	if err != nil {
		return fmt.Errorf("cannot read %s answer of peer %s: %w", cmd, p.Name, err)
	}
	return nil
}

// httpError is a non-200 answer from kubo.
type httpError struct {
	cmd        string
	status     int
	message    string
	retryAfter time.Duration // from Retry-After, 0 if absent
}

func newHTTPError(cmd string, resp *http.Response) *httpError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(body))
	var kuboErr struct{ Message string }
	if json.Unmarshal(body, &kuboErr) == nil && kuboErr.Message != "" {
		msg = kuboErr.Message
	}
	return &httpError{cmd: cmd, status: resp.StatusCode, message: msg, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s answered HTTP %d %s: %s", e.cmd, e.status, http.StatusText(e.status), e.message)
}

// permanent reports client errors, which a retry would repeat.
func (e *httpError) permanent() bool {
	return e.status >= 400 && e.status < 500 && e.status != http.StatusRequestTimeout && e.status != http.StatusTooManyRequests
}

// parseRetryAfter parses a Retry-After value: seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var he *httpError
	return errors.As(err, &he) && he.permanent()
}

// backoff returns how long to wait before retry number attempt (1-based):
// the Retry-After of err if it has one, else 100ms doubling up to 5s.
func backoff(attempt int, err error) time.Duration {
	var he *httpError
	if errors.As(err, &he) && he.retryAfter > 0 {
		return he.retryAfter
	}
	d := minBackoff << min(attempt-1, 16)
	return min(d, maxBackoff)
}

// retry calls op until it succeeds, fails permanently, ctx ends, or
// MaxRetries retries have failed, and returns the last error wrapped in
// ErrPeerUnavailable.
func (f *Fanout) retry(ctx context.Context, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if isPermanent(err) {
			return fmt.Errorf("%w: %w", ErrPeerUnavailable, err)
		}
		if attempt >= f.cfg.maxRetries {
			return fmt.Errorf("%w: gave up after %d attempts: %w", ErrPeerUnavailable, attempt+1, err)
		}
		d := backoff(attempt+1, err)
		if d > f.cfg.stallTimeout {
			return fmt.Errorf("%w: asked to retry after %v, beyond the stall timeout (%v): %w", ErrPeerUnavailable, d, f.cfg.stallTimeout, err)
		}
		if !sleep(ctx, d) {
			return context.Cause(ctx)
		}
	}
}

// sleep waits d or until ctx ends, and reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// causeOf returns ctx's cause if ctx ended (a stall, a stop, the caller's
// cancellation) instead of the I/O error that the ending produced.
func causeOf(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// mergeCancel returns a context canceled with ctx or, with cause
// ErrStopped, when stop ends.
func mergeCancel(ctx, stop context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(stop, func() { cancel(ErrStopped) })
	return ctx, func() {
		unhook()
		cancel(nil)
	}
}

// lineReader reads NDJSON lines of at most maxResponseLine bytes.
type lineReader struct {
	r   io.Reader
	buf []byte
	beg int // unread data is buf[beg:end]
	end int
	err error // from the last Read, returned once the buffer is used up
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: r, buf: make([]byte, 4096)}
}

// next returns the next non-empty line without its newline; the slice is
// valid until the next call. A last line without a newline is returned
// too. At the end it returns io.EOF.
func (l *lineReader) next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(l.buf[l.beg:l.end], '\n'); i >= 0 {
			line := bytes.TrimSpace(l.buf[l.beg : l.beg+i])
			l.beg += i + 1
			if len(line) > 0 {
				return line, nil
			}
			continue
		}
		if l.err != nil {
			line := bytes.TrimSpace(l.buf[l.beg:l.end])
			l.beg = l.end
			if len(line) > 0 && l.err == io.EOF {
				return line, nil
			}
			return nil, l.err
		}
		if l.beg > 0 {
			l.end = copy(l.buf, l.buf[l.beg:l.end])
			l.beg = 0
		}
		if l.end == len(l.buf) {
			if len(l.buf) >= maxResponseLine {
				return nil, &permanentError{fmt.Errorf("cannot read answer: line longer than %d bytes", maxResponseLine)}
			}
			l.buf = append(l.buf, make([]byte, len(l.buf))...)
		}
		var n int
		n, l.err = l.r.Read(l.buf[l.end:])
		l.end += n
	}
}
