package restapi

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// forwardedHeaders are the request headers passed on to the cluster; the
// cluster's own credentials replace the client's Authorization.
var forwardedHeaders = []string{"Content-Type", "Accept", "Origin"}

// hopHeaders are response headers that describe one connection, not the
// answer: fasthttp sets its own.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Trailer": true,
	"Content-Length": true, "Upgrade": true, "Date": true, "Server": true,
}

// forward answers a request with the cluster's answer (ingestd in front
// of an IPFS Cluster, docs/cluster.md): same method, path, query and
// body, the cluster's credentials; the answer's status, headers and body
// are passed through as they arrive, streams stay streams, and an
// X-Stream-Error trailer is passed on after the body.
func (s *Server) forward(ctx *fasthttp.RequestCtx, c *ClusterConfig) error {
	var body io.Reader
	if m := string(ctx.Method()); m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		b, err := s.smallBody(ctx, maxPeerBody)
		if err != nil {
			return badParam("error decoding request body")
		}
		body = bytes.NewReader(b)
	}
	hdr := http.Header{}
	for _, k := range forwardedHeaders {
		if v := ctx.Request.Header.Peek(k); len(v) > 0 {
			hdr.Set(k, string(v))
		}
	}
	fctx, cancel := context.WithCancel(s.baseCtx)
	resp, err := c.Client.Do(fctx, string(ctx.Method()), string(ctx.Path()), string(ctx.QueryArgs().QueryString()), body, hdr)
	if err != nil {
		cancel()
		return err
	}
	ctx.SetStatusCode(resp.StatusCode)
	for k, vs := range resp.Header {
		if hopHeaders[k] {
			continue
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	_, declared := resp.Trailer["X-Stream-Error"]
	if declared {
		_ = ctx.Response.Header.SetTrailer("X-Stream-Error")
	}
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		cancel()
		return nil
	}
	size := -1
	if resp.ContentLength >= 0 && !declared {
		size = int(resp.ContentLength)
	}
	ctx.Response.ImmediateHeaderFlush = true
	ctx.SetBodyStream(&proxyBody{resp: resp, hdr: &ctx.Response.Header, cancel: cancel, conn: ctx.Conn(), writeStall: s.cfg.WriteStallTimeout}, size)
	return nil
}

// proxyBody passes a cluster answer's body through. fasthttp reads it on
// the connection's goroutine; at the end of the body the X-Stream-Error
// trailer, now known, is set on the response header, which fasthttp then
// writes as the trailer.
type proxyBody struct {
	resp   *http.Response
	hdr    *fasthttp.ResponseHeader
	cancel context.CancelFunc
	// conn's write deadline moves forward by writeStall with every read
	// (extendWrite): a long stream is not cut, a stopped reader is.
	conn       net.Conn
	writeStall time.Duration
}

func (p *proxyBody) Read(b []byte) (int, error) {
	n, err := p.resp.Body.Read(b)
	extendWrite(p.conn, p.writeStall)
	if err == io.EOF {
		if vs := p.resp.Trailer.Values("X-Stream-Error"); len(vs) > 0 && strings.Join(vs, "") != "" {
			p.hdr.Set("X-Stream-Error", strings.Join(vs, "; "))
		}
	}
	return n, err
}

// Close ends the cluster request, also when the client went away.
func (p *proxyBody) Close() error {
	p.cancel()
	return p.resp.Body.Close()
}
