package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/pinner"
)

// addedOutput is IPFS Cluster's AddedOutput (spec §4.4): lowercase keys,
// sizes as numbers, cid null on progress objects.
type addedOutput struct {
	Name        string     `json:"name"`
	Cid         pinner.CID `json:"cid"`
	Bytes       uint64     `json:"bytes,omitempty"`
	Size        uint64     `json:"size,omitempty"`
	Allocations []string   `json:"allocations,omitempty"`
}

var errTooBusy = &StatusError{Code: fasthttp.StatusServiceUnavailable, RetryAfter: 5, Err: errors.New("too many concurrent adds, retry later")}

// peekedEntries replays the entry read before the response was committed.
type peekedEntries struct {
	first *multipart.Entry
	r     *multipart.Reader
}

func (p *peekedEntries) Next() (*multipart.Entry, error) {
	if e := p.first; e != nil {
		p.first = nil
		return e, nil
	}
	return p.r.Next()
}

func (s *Server) acquireAdd() bool {
	select {
	case s.addSem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.MaxQueueDuration)
	defer t.Stop()
	select {
	case s.addSem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// handleAdd is POST /add. Everything that can be checked before the body
// is read — the query, the Content-Type and the first part — is answered
// with a 400 error object; after that the 200 is committed and errors go
// to the X-Stream-Error trailer (spec §1.5).
func (s *Server) handleAdd(ctx *fasthttp.RequestCtx) error {
	p, err := ParseAddParams(argsQuery{ctx.QueryArgs()})
	if err != nil {
		return err
	}
	if p.Format == "car" && p.Unixfs.Wrap {
		return &StatusError{Code: fasthttp.StatusBadRequest, Err: errCarWrap}
	}
	if p.Shard {
		return &StatusError{Code: fasthttp.StatusBadRequest, Err: errors.New("shard=true is not supported: ingestd pins whole DAGs")}
	}
	if s.cfg.Fanout == nil && !p.OnlyHash {
		// A read-only store (a full disk) refuses the add before its
		// upload is read, with the 507 and the cause.
		if err := s.cfg.Store.Writable(); err != nil {
			return err
		}
	}
	if s.cfg.Fanout == nil && !p.OnlyHash && !p.NoPin {
		// Factors the embedded peer cannot meet are a 400 before anything
		// is read or stored (with peers, openTarget allocates).
		rmin, rmax := s.backend.resolveFactors(p.Pin.ReplicationFactorMin, p.Pin.ReplicationFactorMax)
		if _, err := s.backend.allocate(s.baseCtx, rmin, rmax, p.Pin.UserAllocations); err != nil {
			return err
		}
	}
	boundary, err := multipart.Boundary(string(ctx.Request.Header.ContentType()))
	if err != nil {
		return err
	}
	if !s.acquireAdd() {
		s.cfg.Metrics.AdmissionRejected()
		return errTooBusy
	}
	untrack := func() {}
	if !p.StreamChannels {
		// Tracked as startStream tracks a streamed add: Shutdown must not
		// close the hash pool and the store under it.
		done, ok := s.track()
		if !ok {
			<-s.addSem
			return errShuttingDown
		}
		untrack = done
	}
	actx, cancel := context.WithCancel(s.baseCtx)
	// The embedded store's collection waits for the add: the blocks it
	// stores, or finds already stored, are unpinned until its pin is
	// recorded.
	hold := s.holdStore()
	if p.OnlyHash {
		hold()
	}
	release := func() { hold(); cancel(); <-s.addSem; untrack() }
	body := s.requestBody(actx, ctx)
	// The connection of an add is not reused: its reads may be cut by a
	// past deadline (requestBody), and a failed add's upload may not have
	// been read to its end.
	ctx.Response.Header.SetConnectionClose()
	mr := multipart.NewReader(body, boundary)
	first, err := mr.Next()
	if err == io.EOF {
		release()
		return unixfs.ErrNoFiles
	}
	if err != nil {
		release()
		return err
	}
	if p.Format == "car" && first.Kind != multipart.File {
		release()
		return &StatusError{Code: fasthttp.StatusBadRequest, Err: errCarNotFile}
	}
	// Allocation before the 200: with no live peer the add fails fast with
	// an error object instead of reading the upload first.
	t, err := s.openTarget(actx, p)
	if err != nil {
		release()
		return err
	}
	t.client, t.query = ctx.RemoteIP().String(), string(ctx.QueryArgs().QueryString())
	entries := &peekedEntries{first: first, r: mr}
	if !p.StreamChannels {
		defer release()
		return s.addBuffered(actx, ctx, p, t, entries)
	}
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Chunked-Output", "1")
	err = s.startStream(ctx, actx, cancel, false, func(actx context.Context, send func([]byte) error) error {
		defer release()
		err := s.runAdd(actx, p, t, entries, func(o unixfs.Output) error {
			b, err := s.encodeOutput(o, p, t)
			if err != nil {
				return err
			}
			return send(b)
		})
		if err != nil {
			drainBody(body)
		}
		return err
	})
	if err != nil {
		release()
	}
	return err
}

func (s *Server) addBuffered(actx context.Context, ctx *fasthttp.RequestCtx, p *AddParams, t *target, entries unixfs.EntryReader) error {
	var outs []json.RawMessage
	err := s.runAdd(actx, p, t, entries, func(o unixfs.Output) error {
		b, err := s.encodeOutput(o, p, t)
		if err == nil {
			outs = append(outs, b)
		}
		return err
	})
	if err != nil {
		code, _ := statusOf(err)
		if code < 500 && code != fasthttp.StatusNotFound {
			// Options were checked up front; anything found in the body
			// is a failed add, which IPFS Cluster reports as 500 here.
			code = fasthttp.StatusInternalServerError
		}
		return &StatusError{Code: code, Err: err}
	}
	writeJSON(ctx, fasthttp.StatusOK, outs)
	return nil
}

func (s *Server) encodeOutput(o unixfs.Output, p *AddParams, t *target) ([]byte, error) {
	out := addedOutput{Name: o.Name, Cid: pinner.CID{Cid: o.Cid}, Bytes: o.Bytes, Size: o.Size}
	switch {
	case o.IsProgress() || p.OnlyHash:
	case t.committed != nil:
		out.Allocations = t.committed
	default:
		out.Allocations = s.allocations(t)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("cannot encode output: %w", err)
	}
	return append(b, '\n'), nil
}

// runAdd imports the upload into its target, makes the blocks durable
// (store sync, or every peer's acknowledgement), pins and records the pins.
// A pin is recorded only after every block of its DAG is durable and, with
// peers, pinned on them, so a failed or interrupted add leaves no pin.
func (s *Server) runAdd(ctx context.Context, p *AddParams, t *target, entries unixfs.EntryReader, emit func(unixfs.Output) error) (err error) {
	m := s.cfg.Metrics
	done := m.AddStarted(p.Format)
	start := time.Now()
	sink, counts := ingest.Counting(t.sink)
	t.sink = sink
	var root cid.Cid
	defer func() {
		done(err)
		m.Ingested(counts.Blocks.Load(), counts.Bytes.Load())
		switch {
		case err == nil:
		case p.Format == "car" && isCarError(err):
			m.CarRejected()
		case errors.Is(err, blockfanout.ErrQuorum):
			m.QuorumFailed()
		}
		attrs := []any{
			slog.String("client", t.client), slog.String("format", p.Format), slog.String("query", t.query),
			slog.Int64("bytes", counts.Bytes.Load()), slog.Int64("blocks", counts.Blocks.Load()),
			slog.Duration("duration", time.Since(start)), slog.Any("allocations", s.allocations(t)),
		}
		if root.Defined() {
			attrs = append(attrs, slog.String("root", root.String()))
		}
		if err != nil {
			s.events().Warn("add failed", append(attrs, slog.String("error", err.Error()))...)
			return
		}
		s.events().Info("add", attrs...)
	}()
	return s.importAdd(ctx, p, t, entries, func(o unixfs.Output) error {
		if !o.IsProgress() {
			root = o.Cid
		}
		return emit(o)
	})
}

// importAdd is the add itself: import, make durable, pin, emit.
func (s *Server) importAdd(ctx context.Context, p *AddParams, t *target, entries unixfs.EntryReader, emit func(unixfs.Output) error) error {
	// The last output, the root, is held back until its pin is committed:
	// a client that sees the root line can rely on the pin (it carries the
	// committed allocations), and a failed add shows no root at all.
	var held *unixfs.Output
	hold := func(o unixfs.Output) error {
		if held != nil {
			if err := emit(*held); err != nil {
				return err
			}
			held = nil
		}
		if o.IsProgress() || strings.Contains(o.Name, "/") {
			// Only a top-level entry can be a root: "d/a" is
			// followed by "d" at least.
			return emit(o)
		}
		held = &o
		return nil
	}
	var roots []cid.Cid
	var err error
	if p.Format == "car" {
		roots, err = s.runCarAdd(ctx, p, t, entries, hold)
	} else {
		roots, err = unixfs.Import(ctx, entries, &p.Unixfs, s.cfg.Pool, t.sink, hold)
	}
	if err := t.finish(ctx, err); err != nil {
		return err
	}
	if !p.OnlyHash {
		if err := s.commitAdd(ctx, p, t, roots); err != nil {
			return err
		}
	}
	if held != nil {
		return emit(*held)
	}
	return nil
}

// commitAdd makes the blocks of a finished add durable (store sync; with
// peers every block was acknowledged already) and pins its roots.
func (s *Server) commitAdd(ctx context.Context, p *AddParams, t *target, roots []cid.Cid) error {
	if t.session == nil {
		if err := s.cfg.Store.Sync(ctx); err != nil {
			return fmt.Errorf("cannot sync blocks: %w", err)
		}
	}
	if p.NoPin {
		return nil
	}
	pins, err := s.backend.pinAdded(ctx, t, p, roots)
	if err != nil {
		return err
	}
	if len(pins) > 0 && len(pins[len(pins)-1].Allocations) > 0 {
		t.committed = pins[len(pins)-1].Allocations
	}
	return nil
}

// newPin builds the pin of an add, allocated to the peers that hold it.
// Replication factors default to IPFS Cluster's stock -1 (everywhere);
// then, as in IPFS Cluster, the allocations are [].
func (s *Server) newPin(root cid.Cid, po *PinOptions, allocs []string) pinner.Pin {
	rmin, rmax := s.backend.resolveFactors(po.ReplicationFactorMin, po.ReplicationFactorMax)
	if rmin == -1 && rmax == -1 {
		allocs = []string{}
	}
	mode, depth := pinner.ModeRecursive, -1
	if po.Mode == pinner.ModeDirect {
		mode, depth = pinner.ModeDirect, 0
	}
	meta := po.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	return pinner.Pin{
		ReplicationFactorMin: rmin,
		ReplicationFactorMax: rmax,
		Name:                 po.Name,
		Mode:                 mode,
		ShardSize:            po.ShardSize,
		UserAllocations:      po.UserAllocations,
		ExpireAt:             po.ExpireAt,
		Metadata:             meta,
		Origins:              po.Origins,
		Cid:                  pinner.CID{Cid: root},
		Type:                 pinner.TypePin,
		Allocations:          allocs,
		MaxDepth:             depth,
		Timestamp:            time.Now(),
	}
}

func (s *Server) peerIDs(peers []*blockfanout.Peer) []string {
	ids := make([]string, 0, len(peers))
	for _, p := range peers {
		if id := s.backend.peerID(p); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// argsQuery adapts fasthttp's query args to Query.
type argsQuery struct{ a *fasthttp.Args }

func (q argsQuery) Get(k string) string { return string(q.a.Peek(k)) }
func (q argsQuery) VisitAll(f func(k, v string)) {
	for k, v := range q.a.All() {
		f(string(k), string(v))
	}
}
