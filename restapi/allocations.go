package restapi

import (
	"context"
	"encoding/json"
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
	pctx, cancel := context.WithCancel(s.baseCtx)
	s.startStream(ctx, pctx, cancel, true, func(pctx context.Context, send func([]byte) error) error {
		if !wantPins {
			return nil
		}
		return s.cfg.Pins.List(pctx, func(p pinner.Pin) error {
			b, err := json.Marshal(p)
			if err != nil {
				return err
			}
			return send(append(b, '\n'))
		})
	})
	return nil
}
