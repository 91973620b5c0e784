package restapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrUploadStalled and ErrUploadTooSlow end an upload whose client stopped
// sending, or sends below Config.MinUploadRate (docs/reliability.md).
var (
	ErrUploadStalled = errors.New("upload stalled")
	ErrUploadTooSlow = errors.New("upload too slow")
)

// maxDrain is how much of an upload is still read after the add failed.
const maxDrain = 32 << 20

// drainStall bounds how long a client that stopped sending may hold the
// drain of a failed add.
const drainStall = 5 * time.Second

// requestBody is the request body as a stream. fasthttp streams only
// bodies that outgrow Server.MaxRequestBodySize or arrive chunked; a small
// body with a Content-Length has been read already.
//
// It is not buffered here: the multipart reader buffers what it must and
// reads file content straight into chunk buffers, so that one read(2)
// puts upload bytes where they are hashed.
func (s *Server) requestBody(actx context.Context, ctx *fasthttp.RequestCtx) io.Reader {
	if r := ctx.RequestBodyStream(); r != nil {
		u := &uploadReader{ctx: actx, r: r, conn: ctx.Conn(), stall: s.cfg.BodyStallTimeout, minRate: s.cfg.MinUploadRate, stalls: &s.stalledUploads}
		if c := u.conn; c != nil {
			// A read blocked on the connection does not see the context:
			// a past deadline ends it when the add is cancelled (by
			// Shutdown, or a client that stopped reading the response).
			// The add's connection is not reused (Connection: close).
			context.AfterFunc(actx, func() { _ = c.SetReadDeadline(time.Now()) })
		}
		return u
	}
	return bytes.NewReader(ctx.PostBody())
}

// drainUnread reads up to maxDrain of a request body that was not read,
// for an add rejected before its upload: a client still sending when the
// server closes would get a connection reset instead of the answer.
func (s *Server) drainUnread(ctx *fasthttp.RequestCtx) {
	r := ctx.RequestBodyStream()
	if r == nil {
		return
	}
	drainBody(&uploadReader{ctx: s.baseCtx, r: r, conn: ctx.Conn(), stall: drainStall, minRate: s.cfg.MinUploadRate, stalls: &s.stalledUploads})
	if c := ctx.Conn(); c != nil {
		_ = c.SetReadDeadline(time.Time{})
	}
}

// drainBody reads what is left of a failed upload, up to maxDrain: the
// response ends with Connection: close, and closing a socket with unread
// data resets it, so a client still sending (most do not read before they
// have sent everything) would get a write error instead of the error in
// the trailer. A longer rest is cut off; so is a stalled one, after
// drainStall. An upload whose own reading failed (it stalled, trickled or
// broke) is not drained: its client is not sending, and waiting for it a
// second time would delay the error it is owed.
func drainBody(body io.Reader) {
	if u, ok := body.(*uploadReader); ok {
		if u.failed != nil {
			return
		}
		u.stall = min(u.stall, drainStall)
	}
	_, _ = io.CopyN(io.Discard, body, maxDrain)
}

// uploadReader reads an upload from its connection with two bounds that
// hold however long the whole upload takes:
//   - stall: the connection's read deadline is moved forward before every
//     read, so a client that sends nothing for this long fails the add;
//   - minRate: over every stall-long window of time spent waiting for the
//     client (time the server is busy hashing or waiting for peers does
//     not count), the client must send minRate bytes per second, so a
//     client trickling a byte now and then cannot hold an add slot.
//
// Once the add's context ends it stops reading: lineStream.Close cancels
// it and then sets a past deadline, and the second context check in Read
// keeps a concurrent Read from moving that deadline forward again.
//
// It is used by one goroutine at a time (the add's reader).
type uploadReader struct {
	ctx     context.Context
	r       io.Reader
	conn    net.Conn
	stall   time.Duration
	minRate int // bytes per second; <= 0: no minimum

	waited time.Duration // in the current window
	got    int64         // bytes received in the current window
	failed error         // the first read error; reads are not retried
	stalls *atomic.Int64 // Server.stalledUploads: uploads ended by either bound
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if u.failed != nil {
		return 0, u.failed
	}
	if err := u.ctx.Err(); err != nil {
		return 0, err
	}
	if u.conn != nil {
		_ = u.conn.SetReadDeadline(time.Now().Add(u.stall))
		if err := u.ctx.Err(); err != nil {
			_ = u.conn.SetReadDeadline(time.Now())
			return 0, err
		}
	}
	start := time.Now()
	n, err := u.r.Read(p)
	u.waited += time.Since(start)
	u.got += int64(n)
	switch {
	case err != nil && err != io.EOF:
		if errors.Is(err, os.ErrDeadlineExceeded) && u.ctx.Err() == nil {
			u.stalls.Add(1)
			err = fmt.Errorf("cannot read upload: %w: nothing received for %s", ErrUploadStalled, u.stall)
		}
		u.failed = err
	case u.minRate > 0 && u.waited >= u.stall:
		if need := int64(float64(u.minRate) * u.waited.Seconds()); u.got < need {
			u.stalls.Add(1)
			u.failed = fmt.Errorf("cannot read upload: %w: %d bytes in %s of waiting, below the minimum of %d bytes/s", ErrUploadTooSlow, u.got, u.waited.Round(time.Millisecond), u.minRate)
			return n, u.failed
		}
		u.waited, u.got = 0, 0
	}
	return n, err
}
