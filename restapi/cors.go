package restapi

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// corsPolicy is IPFS Cluster's CORS layer: rs/cors v1.11.1 with the
// cors_* defaults of service.json (spec §1.1, §3.3). Only what those
// defaults use is implemented: every origin is allowed, so there is no
// origin list to match.
type corsPolicy struct {
	// allowedMethods are compared case-sensitively with the request's
	// method, as rs/cors does. OPTIONS is always allowed on top.
	allowedMethods []string
	// allowedHeaders are the request headers a preflight may ask for,
	// lower case and sorted: rs/cors accepts an Access-Control-Request-Headers
	// list only in that form, as the Fetch standard makes browsers send it.
	allowedHeaders []string
	// exposedHeaders is the Access-Control-Expose-Headers value.
	exposedHeaders   string
	allowCredentials bool
}

// defaultCORS is cors_allowed_origins ["*"], cors_allowed_methods ["GET"],
// cors_allowed_headers [] (rs/cors then allows Accept, Content-Type and
// X-Requested-With, and so not Authorization), the four cors_exposed_headers,
// cors_allow_credentials true and cors_max_age 0 (no Max-Age header).
func defaultCORS() *corsPolicy {
	return &corsPolicy{
		allowedMethods:   []string{fasthttp.MethodGet},
		allowedHeaders:   []string{"accept", "content-type", "x-requested-with"},
		exposedHeaders:   "Content-Type, X-Stream-Output, X-Chunked-Output, X-Content-Length",
		allowCredentials: true,
	}
}

const (
	varyPreflight       = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
	headerReqMethod     = "Access-Control-Request-Method"
	headerReqHeaders    = "Access-Control-Request-Headers"
	headerAllowOrigin   = "Access-Control-Allow-Origin"
	headerAllowMethods  = "Access-Control-Allow-Methods"
	headerAllowHeaders  = "Access-Control-Allow-Headers"
	headerAllowCreds    = "Access-Control-Allow-Credentials"
	headerExposeHeaders = "Access-Control-Expose-Headers"
)

// handle sets the CORS headers of the request on ctx.Response and reports
// whether it answered the request itself (a preflight: 204, never routed).
// Headers set here survive what the routes write, since no handler resets
// the response header.
func (c *corsPolicy) handle(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if ctx.IsOptions() && len(h.Peek(headerReqMethod)) > 0 {
		c.preflight(ctx)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return true
	}
	ctx.Response.Header.Add(fasthttp.HeaderVary, fasthttp.HeaderOrigin)
	if len(h.Peek(fasthttp.HeaderOrigin)) == 0 || !c.methodAllowed(string(ctx.Method())) {
		// rs/cors: simple requests with another method are still served,
		// only without CORS headers (spec §3.3, verified with POST).
		return false
	}
	ctx.Response.Header.Set(headerAllowOrigin, "*")
	ctx.Response.Header.Set(headerExposeHeaders, c.exposedHeaders)
	if c.allowCredentials {
		ctx.Response.Header.Set(headerAllowCreds, "true")
	}
	return false
}

// preflight is rs/cors' handlePreflight: Vary always; the Allow headers
// only if the origin is present, the method allowed and every requested
// header allowed. Allow-Methods and Allow-Headers echo the request.
func (c *corsPolicy) preflight(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	ctx.Response.Header.Add(fasthttp.HeaderVary, varyPreflight)
	if len(h.Peek(fasthttp.HeaderOrigin)) == 0 {
		return
	}
	// PeekAll's result is only valid until the next PeekAll: copy it.
	methods := peekAll(h, headerReqMethod)
	if !c.methodAllowed(methods[0]) {
		return
	}
	reqHeaders := peekAll(h, headerReqHeaders)
	if len(reqHeaders) > 0 && !c.headersAllowed(reqHeaders) {
		return
	}
	ctx.Response.Header.Set(headerAllowOrigin, "*")
	for _, m := range methods {
		ctx.Response.Header.Add(headerAllowMethods, m)
	}
	if len(reqHeaders) > 0 && len(reqHeaders[0]) > 0 {
		for _, v := range reqHeaders {
			ctx.Response.Header.Add(headerAllowHeaders, v)
		}
	}
	if c.allowCredentials {
		ctx.Response.Header.Set(headerAllowCreds, "true")
	}
}

// peekAll copies every value of the request header key: rs/cors reads
// them all where gateways split one header into several.
func peekAll(h *fasthttp.RequestHeader, key string) []string {
	var vs []string
	for _, v := range h.PeekAll(key) {
		vs = append(vs, string(v))
	}
	return vs
}

// methodAllowed is rs/cors' isMethodAllowed: OPTIONS is always allowed.
func (c *corsPolicy) methodAllowed(m string) bool {
	if m == fasthttp.MethodOptions {
		return true
	}
	for _, a := range c.allowedMethods {
		if m == a {
			return true
		}
	}
	return false
}

// Limits of rs/cors' list parser (internal.SortedSet.Accepts).
const (
	corsMaxOWS   = 1  // spaces or tabs tolerated around each name
	corsMaxEmpty = 16 // empty list elements tolerated
)

// headersAllowed is rs/cors' SortedSet.Accepts over every
// Access-Control-Request-Headers value: each name, trimmed of a space or
// tab on each side (trimOWS), must be allowed and come after the previous
// one in allowedHeaders' order (so lower case, sorted, no repeats). A
// name that is not lower case fails, as it does with rs/cors.
func (c *corsPolicy) headersAllowed(values []string) bool {
	last, empty := -1, 0
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			name, ok := trimOWS(name, corsMaxOWS)
			if !ok {
				return false
			}
			if len(name) == 0 {
				empty++
				if empty > corsMaxEmpty {
					return false
				}
				continue
			}
			pos := -1
			for i, a := range c.allowedHeaders {
				if name == a {
					pos = i
					break
				}
			}
			if pos <= last {
				return false
			}
			last = pos
		}
	}
	return true
}

// trimOWS is rs/cors' trimOWS, quirks included: it trims spaces and tabs
// from the right, then from the left, and fails when it would look at one
// more byte after trimming n — so "a  " fails but a name of two spaces
// trims to an empty element.
func trimOWS(s string, n int) (string, bool) {
	isOWS := func(b byte) bool { return b == ' ' || b == '\t' }
	for i := 0; len(s) > 0; i++ {
		if i > n {
			return "", false
		}
		if !isOWS(s[len(s)-1]) {
			break
		}
		s = s[:len(s)-1]
	}
	for i := 0; len(s) > 0; i++ {
		if i > n {
			return "", false
		}
		if !isOWS(s[0]) {
			break
		}
		s = s[1:]
	}
	return s, true
}
