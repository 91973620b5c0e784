package restapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// lineStream is the body of a streamed response (spec §1.4, §1.5): NDJSON
// objects produced by a goroutine, framed by fasthttp as chunks, and an
// X-Stream-Error trailer set once the producer has finished.
//
// fasthttp calls Read and Close on the connection's own goroutine while it
// writes the response, so the trailer is set on the response header from
// the goroutine that writes it; the producer never touches the RequestCtx.
type lineStream struct {
	lines  chan []byte
	done   chan struct{} // closed when the producer has returned
	err    error         // the producer's result; read after done
	cur    []byte
	hdr    *fasthttp.ResponseHeader
	conn   net.Conn
	cancel context.CancelFunc
	// writeStall is how long the client may take to accept each object.
	writeStall time.Duration
}

// startStream runs produce on a tracked goroutine and makes its output the
// response body. pctx is produce's context and cancel ends it; produce must
// stop reading the request body when pctx ends.
//
// With waitFirst (the listing streams, spec §1.4) it waits for the first
// object: a producer that ends without output gets 204, or the error
// object of its error. Without it (/add, spec §1.5) the 200 is committed
// at once, so that the response starts while the upload is still arriving,
// and every later error goes to the trailer.
//
// On success no X-Stream-Error value is sent: IPFS Cluster sends an empty
// one on the listing streams, fasthttp cannot, and clients treat an absent
// and an empty trailer alike (spec §6.3).
//
// It fails only when the server is shutting down; produce then never runs.
func (s *Server) startStream(ctx *fasthttp.RequestCtx, pctx context.Context, cancel context.CancelFunc, waitFirst bool, produce func(ctx context.Context, send func([]byte) error) error) error {
	done, ok := s.track()
	if !ok {
		cancel()
		return errShuttingDown
	}
	ls := &lineStream{
		lines:      make(chan []byte, 64),
		done:       make(chan struct{}),
		hdr:        &ctx.Response.Header,
		conn:       ctx.Conn(),
		cancel:     cancel,
		writeStall: s.cfg.WriteStallTimeout,
	}
	send := func(b []byte) error {
		select {
		case ls.lines <- b:
			return nil
		case <-pctx.Done():
			return pctx.Err()
		}
	}
	go func() {
		defer done()
		defer close(ls.done)
		defer close(ls.lines)
		defer func() {
			if r := recover(); r != nil {
				ls.err = fmt.Errorf("internal error: %v", r)
			}
		}()
		ls.err = produce(pctx, send)
	}()
	if waitFirst {
		first, ok := <-ls.lines
		if !ok {
			<-ls.done
			cancel()
			if ls.err != nil {
				writeError(ctx, ls.err)
				return nil
			}
			ctx.SetContentType("application/json")
			ctx.SetStatusCode(fasthttp.StatusNoContent)
			return nil
		}
		ls.cur = first
	}
	_ = ctx.Response.Header.SetTrailer("X-Stream-Error")
	ctx.Response.ImmediateHeaderFlush = true
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBodyStream(ls, -1)
	return nil
}

// Read implements io.Reader. It blocks only until one object is queued,
// then adds every further object already queued that fits in p: fasthttp
// writes each Read as one chunk with its own write(2), and a burst of
// outputs (an add of 10,000 small files sends 10,101) cost one syscall
// each, 10% of the CPU of such an add. An object that arrives alone is
// still sent at once. lines are owned by the stream once sent; they are
// only read here.
func (ls *lineStream) Read(p []byte) (int, error) {
	if len(ls.cur) == 0 {
		line, ok := <-ls.lines
		if !ok {
			return 0, ls.end()
		}
		ls.cur = line
	}
	n := copy(p, ls.cur)
	ls.cur = ls.cur[n:]
fill:
	for len(ls.cur) == 0 && n < len(p) {
		select {
		case line, ok := <-ls.lines:
			if !ok {
				break fill // closed: the next Read ends the stream
			}
			m := copy(p[n:], line)
			n += m
			ls.cur = line[m:]
		default:
			break fill
		}
	}
	extendWrite(ls.conn, ls.writeStall)
	return n, nil
}

// end sets the trailer once the producer has returned and gives io.EOF.
func (ls *lineStream) end() error {
	<-ls.done
	if ls.err != nil {
		ls.hdr.Set("X-Stream-Error", message(ls.err))
	}
	// The last chunk and the trailer are written next.
	extendWrite(ls.conn, ls.writeStall)
	return io.EOF
}

// extendWrite moves a connection's write deadline forward before the next
// piece of a streamed response is written: fasthttp sets one deadline for
// the whole response, which would cut a long add, while none at all lets
// a client that stopped reading hold the add (and its slot) for ever.
func extendWrite(c net.Conn, d time.Duration) {
	if c != nil && d > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(d))
	}
}

// Close implements io.Closer. fasthttp calls it after the response, also
// when writing failed because the client went away: the producer is
// cancelled and, if it is blocked reading the request body, unblocked by a
// read deadline. Close waits for it, because the request body stream is
// released once Close returns.
func (ls *lineStream) Close() error {
	ls.cancel()
	select {
	case <-ls.done:
		return nil
	default:
	}
	if ls.conn != nil {
		_ = ls.conn.SetReadDeadline(time.Now())
	}
	for range ls.lines {
	}
	<-ls.done
	return nil
}
