package restapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/path"
	cid "github.com/ipfs/go-cid"
	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/pinner"
)

// The pin routes (spec §2): POST/DELETE /pins/{cid} and the path forms
// the ctl uses, GET /pins/{cid} and /pins, recover. The pinner does the
// work; these parse, call and frame.

// decodeCid parses a {hash} segment with IPFS Cluster's 400 message.
func decodeCid(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, badParam("error decoding Cid: %s", err)
	}
	return c, nil
}

// localParam is IPFS Cluster's local flag outside /add: only the literal
// "true" turns it on (spec §1.6).
func localParam(ctx *fasthttp.RequestCtx) bool {
	return string(ctx.QueryArgs().Peek("local")) == "true"
}

// pinRequest parses the pin options of the query into the request the
// pinner takes.
func pinRequest(ctx *fasthttp.RequestCtx, c cid.Cid) (pinner.Pin, error) {
	var po PinOptions
	if err := parsePinOptions(argsQuery{ctx.QueryArgs()}, &po); err != nil {
		return pinner.Pin{}, err
	}
	return pinner.Pin{
		ReplicationFactorMin: po.ReplicationFactorMin,
		ReplicationFactorMax: po.ReplicationFactorMax,
		Name:                 po.Name,
		Mode:                 po.Mode,
		ShardSize:            po.ShardSize,
		UserAllocations:      po.UserAllocations,
		ExpireAt:             po.ExpireAt,
		Metadata:             po.Metadata,
		PinUpdate:            pinner.CID{Cid: po.PinUpdate},
		Origins:              po.Origins,
		Cid:                  pinner.CID{Cid: c},
	}, nil
}

// handlePin is POST /pins/{cid}. Unlike IPFS Cluster, mode=direct is
// honoured on this route too (docs/rest-api.md).
func (s *Server) handlePin(ctx *fasthttp.RequestCtx, arg string) error {
	c, err := decodeCid(arg)
	if err != nil {
		return err
	}
	return s.pin(ctx, c)
}

func (s *Server) pin(ctx *fasthttp.RequestCtx, c cid.Cid) error {
	req, err := pinRequest(ctx, c)
	if err != nil {
		return err
	}
	// A CID kubo refuses (an identity CID carrying more than 128 bytes, a
	// hash it does not allow) could never be pinned on a peer and, as an
	// identity CID, can be megabytes long in every listing.
	for _, k := range []cid.Cid{c, req.PinUpdate.Cid} {
		if k.Defined() {
			if err := ingest.CheckCID(k); err != nil {
				return &StatusError{Code: fasthttp.StatusBadRequest, Err: err}
			}
		}
	}
	// A collection that marked before this pin exists must not sweep its
	// blocks after.
	defer s.holdStore()()
	pin, err := s.pinner.Pin(s.baseCtx, req)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, pin)
	return nil
}

// handleUnpin is DELETE /pins/{cid}: the pin as it was, or 404.
func (s *Server) handleUnpin(ctx *fasthttp.RequestCtx, arg string) error {
	c, err := decodeCid(arg)
	if err != nil {
		return err
	}
	return s.unpin(ctx, c)
}

func (s *Server) unpin(ctx *fasthttp.RequestCtx, c cid.Cid) error {
	pin, err := s.pinner.Unpin(s.baseCtx, c)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, pin)
	return nil
}

// handlePinPath is POST /pins/{ipfs|ipns|ipld}/{path}: what ipfs-cluster-ctl
// pin add and pin update use, even for a bare CID.
func (s *Server) handlePinPath(ctx *fasthttp.RequestCtx, ns, rest string) error {
	c, err := s.resolve(ctx, ns, rest)
	if err != nil {
		return err
	}
	return s.pin(ctx, c)
}

// handleUnpinPath is DELETE /pins/{ipfs|ipns|ipld}/{path}: ipfs-cluster-ctl
// pin rm. Pin options in the query are parsed and ignored, as IPFS
// Cluster does, so a malformed one is still a 400.
func (s *Server) handleUnpinPath(ctx *fasthttp.RequestCtx, ns, rest string) error {
	if _, err := pinRequest(ctx, cid.Undef); err != nil {
		return err
	}
	c, err := s.resolve(ctx, ns, rest)
	if err != nil {
		return err
	}
	return s.unpin(ctx, c)
}

// resolve turns /<ns>/<rest> into a CID: /ipfs/<cid> directly, anything
// else through a peer's kubo resolve (a mutable result is an error), as
// IPFS Cluster does.
func (s *Server) resolve(ctx *fasthttp.RequestCtx, ns, rest string) (cid.Cid, error) {
	raw := "/" + ns + "/" + strings.TrimRight(rest, "/")
	p, err := path.NewPath(raw)
	if err != nil {
		return cid.Undef, badParam("error parsing path: %s", err)
	}
	segs := p.Segments()
	if ns != "ipns" && len(segs) == 2 {
		c, err := cid.Decode(segs[1])
		if err != nil {
			return cid.Undef, badParam("error parsing path: %s", err)
		}
		return c, nil
	}
	rctx, cancel := context.WithTimeout(s.baseCtx, resolveTimeout)
	defer cancel()
	return s.pinner.Resolve(rctx, p.String())
}

// resolveTimeout bounds the resolution of a pin path.
const resolveTimeout = 30 * time.Second

// handleAllocation is GET /allocations/{cid}: the pin, or 404.
func (s *Server) handleAllocation(ctx *fasthttp.RequestCtx, arg string) error {
	c, err := decodeCid(arg)
	if err != nil {
		return err
	}
	p, err := s.pinner.Get(s.baseCtx, c)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, p)
	return nil
}

// handleStatus is GET /pins/{cid}: every peer asked live; a CID not in the
// pinset is 200 with every peer unpinned.
func (s *Server) handleStatus(ctx *fasthttp.RequestCtx, arg string) error {
	c, err := decodeCid(arg)
	if err != nil {
		return err
	}
	g, err := s.pinner.Status(s.baseCtx, c, localParam(ctx))
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, g)
	return nil
}

// handleRecover is POST /pins/{cid}/recover.
func (s *Server) handleRecover(ctx *fasthttp.RequestCtx, arg string) error {
	c, err := decodeCid(arg)
	if err != nil {
		return err
	}
	g, err := s.pinner.Recover(s.baseCtx, c, localParam(ctx))
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, g)
	return nil
}

// handleStatusAll is GET /pins?local&filter&cids: a stream of
// GlobalPinInfo. With cids, each is looked up (live, in parallel) and
// streamed in completion order, and the filter is ignored; without, every
// pin with its peers' statuses that match the filter.
func (s *Server) handleStatusAll(ctx *fasthttp.RequestCtx) error {
	local := localParam(ctx)
	args := ctx.QueryArgs()
	if v := string(args.Peek("cids")); v != "" {
		var cids []cid.Cid
		for _, a := range strings.Split(v, ",") {
			c, err := decodeCid(a)
			if err != nil {
				return err
			}
			cids = append(cids, c)
		}
		s.streamJSON(ctx, func(pctx context.Context, send func(any) error) error {
			return s.statusCids(pctx, cids, local, send)
		})
		return nil
	}
	f, ok := pinner.ParseFilter(string(args.Peek("filter")))
	if !ok {
		return badParam("invalid filter value")
	}
	s.streamJSON(ctx, func(pctx context.Context, send func(any) error) error {
		return s.pinner.StatusAll(pctx, f, local, func(g pinner.GlobalPinInfo) error { return send(g) })
	})
	return nil
}

// maxParallelStatus bounds the live lookups of one /pins?cids= request.
const maxParallelStatus = 8

// statusCids looks up each CID with at most maxParallelStatus at once and
// sends each answer as it completes; errors are joined into the stream's
// error.
func (s *Server) statusCids(ctx context.Context, cids []cid.Cid, local bool, send func(any) error) error {
	sem := make(chan struct{}, maxParallelStatus)
	var mu sync.Mutex // serializes send and errs
	var errs []string
	var wg sync.WaitGroup
	for _, c := range cids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g, err := s.pinner.Status(ctx, c, local)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				err = send(g)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("cannot get the status of %s: %v", c, err))
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// handleRecoverAll is POST /pins/recover: a stream of what was queued
// again; 204 when nothing needed it.
func (s *Server) handleRecoverAll(ctx *fasthttp.RequestCtx) error {
	local := localParam(ctx)
	s.streamJSON(ctx, func(pctx context.Context, send func(any) error) error {
		return s.pinner.RecoverAll(pctx, local, func(g pinner.GlobalPinInfo) error { return send(g) })
	})
	return nil
}

// streamJSON streams the values produce sends as NDJSON (spec §1.4): 204
// when it sends none, the error object when it fails before the first,
// the X-Stream-Error trailer after.
func (s *Server) streamJSON(ctx *fasthttp.RequestCtx, produce func(ctx context.Context, send func(any) error) error) {
	pctx, cancel := context.WithCancel(s.baseCtx)
	err := s.startStream(ctx, pctx, cancel, true, func(pctx context.Context, sendLine func([]byte) error) error {
		return produce(pctx, func(v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("cannot encode response: %w", err)
			}
			return sendLine(append(b, '\n'))
		})
	})
	if err != nil {
		writeError(ctx, err)
	}
}
