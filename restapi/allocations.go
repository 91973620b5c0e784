package restapi

import (
	"context"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/pinner"
)

// handleAllocations is GET /allocations?filter=…: the pinset as a stream of
// Pin objects. The embedded pinset holds only type "pin".
func (s *Server) handleAllocations(ctx *fasthttp.RequestCtx) error {
	wantPins := true
	if f := string(ctx.QueryArgs().Peek("filter")); f != "" {
		known, pins := false, false
		for _, t := range strings.Split(f, ",") {
			switch strings.TrimSpace(t) {
			case "all", "pin":
				known, pins = true, true
			case "meta-pin", "clusterdag-pin", "shard-pin":
				known = true
			}
		}
		if !known {
			return badParam("invalid filter value")
		}
		wantPins = pins
	}
	s.streamJSON(ctx, func(pctx context.Context, send func(any) error) error {
		if !wantPins {
			return nil
		}
		return s.pinner.List(pctx, func(p pinner.Pin) error { return send(p) })
	})
	return nil
}
