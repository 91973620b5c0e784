package restapi

import (
	"fmt"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

// handle routes a request that passed auth and CORS (spec §1.2 steps 4–5):
// the trailing-slash redirect, path cleaning, then a switch over the path
// segments. A known path with another method is a 405 with no body, an
// unknown path the 404 error object.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	// fasthttp does not recover panics; one bad request must not take
	// every other request down with the process.
	defer func() {
		if r := recover(); r != nil {
			ctx.ResetBody()
			writeError(ctx, fmt.Errorf("internal error: %v", r))
		}
	}()
	// The raw path: fasthttp's Path() is already cleaned, and IPFS
	// Cluster answers an unclean one with a redirect.
	raw := string(ctx.URI().PathOriginal())
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" {
		raw = "/"
	}
	if len(raw) > 1 && strings.HasSuffix(raw, "/") {
		// As gorilla/mux's StrictSlash in IPFS Cluster: 307 to the path
		// without the slash, query kept.
		redirect(ctx, fasthttp.StatusTemporaryRedirect, strings.TrimRight(raw, "/"))
		return
	}
	if clean := path.Clean(raw); clean != raw {
		// As gorilla/mux: //, /./ and /../ get a 301 to the clean path.
		redirect(ctx, fasthttp.StatusMovedPermanently, clean)
		return
	}
	method, p := string(ctx.Method()), string(ctx.Path())
	var err error
	if s.cluster != nil && p != "/add" && p != "/health" && p != "/metrics" {
		err = s.forward(ctx, &s.cluster.cfg)
	} else {
		err = s.route(ctx, method, p)
	}
	if err != nil {
		writeError(ctx, err)
	}
}

func redirect(ctx *fasthttp.RequestCtx, code int, to string) {
	if q := ctx.QueryArgs().QueryString(); len(q) > 0 {
		to += "?" + string(q)
	}
	ctx.Response.Header.Set("Location", to)
	ctx.SetStatusCode(code)
}

// errNotFound is the router's 404 for an unknown path.
var errNotFound = &StatusError{Code: fasthttp.StatusNotFound, Err: fmt.Errorf("not found")}

// errMethod is the router's 405: no body, as gorilla/mux.
var errMethod = &StatusError{Code: fasthttp.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}

// route dispatches on the path's segments. Method checks happen per route;
// the routes and their order follow IPFS Cluster's router (spec §0): e.g.
// POST /pins/recover is recover-all, GET /pins/recover a status request
// for an invalid CID (400).
func (s *Server) route(ctx *fasthttp.RequestCtx, method, p string) error {
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	is := func(m string) bool { return method == m }
	const get, post, del = fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodDelete
	switch {
	case p == "/health":
		if !is(get) {
			return errMethod
		}
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return nil
	case p == "/version":
		if !is(get) {
			return errMethod
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"version": Version})
		return nil
	case p == "/id":
		if !is(get) {
			return errMethod
		}
		writeJSON(ctx, fasthttp.StatusOK, s.id())
		return nil
	case p == "/add":
		if !is(post) {
			return errMethod
		}
		err := s.handleAdd(ctx)
		if err != nil {
			// Answered before the upload was read (a bad option, no
			// slot, no peers): read what the client is still sending,
			// so that it gets this answer rather than a reset.
			s.drainUnread(ctx)
		}
		return err
	case p == "/peers":
		switch {
		case is(get):
			return s.handlePeers(ctx)
		case is(post):
			return s.handlePeerAdd(ctx)
		}
		return errMethod
	case len(seg) == 2 && seg[0] == "peers":
		if !is(del) {
			return errMethod
		}
		return s.handlePeerRm(ctx, seg[1])
	case p == "/allocations":
		if !is(get) {
			return errMethod
		}
		return s.handleAllocations(ctx)
	case len(seg) == 2 && seg[0] == "allocations":
		if !is(get) {
			return errMethod
		}
		return s.handleAllocation(ctx, seg[1])
	case p == "/pins":
		if !is(get) {
			return errMethod
		}
		return s.handleStatusAll(ctx)
	case p == "/pins/recover" && is(post):
		return s.handleRecoverAll(ctx)
	case len(seg) >= 3 && seg[0] == "pins" && (seg[1] == "ipfs" || seg[1] == "ipns" || seg[1] == "ipld"):
		switch {
		case is(post):
			return s.handlePinPath(ctx, seg[1], strings.Join(seg[2:], "/"))
		case is(del):
			return s.handleUnpinPath(ctx, seg[1], strings.Join(seg[2:], "/"))
		}
		// gorilla/mux: the method did not match, but a later route with
		// it might (GET /pins/{hash} does not, the path has more
		// segments): its 404.
		return errNotFound
	case len(seg) == 3 && seg[0] == "pins" && seg[2] == "recover":
		if !is(post) {
			return errMethod
		}
		return s.handleRecover(ctx, seg[1])
	case len(seg) == 2 && seg[0] == "pins":
		switch {
		case is(get):
			return s.handleStatus(ctx, seg[1])
		case is(post):
			return s.handlePin(ctx, seg[1])
		case is(del):
			return s.handleUnpin(ctx, seg[1])
		}
		return errMethod
	case p == "/metrics" && s.cfg.Metrics != nil:
		if !is(get) {
			return errMethod
		}
		s.metricsHandler(ctx)
		return nil
	case p == "/ipfs/gc":
		if !is(post) {
			return errMethod
		}
		return s.handleGC(ctx)
	case p == "/health/graph", p == "/health/alerts", p == "/health/bandwidth", p == "/monitor/metrics":
		if !is(get) {
			return errMethod
		}
		return s.handleHealth(ctx, p)
	case len(seg) == 3 && seg[0] == "monitor" && seg[1] == "metrics":
		if !is(get) {
			return errMethod
		}
		writeJSON(ctx, fasthttp.StatusOK, s.pinner.Metrics(seg[2]))
		return nil
	}
	return errNotFound
}
