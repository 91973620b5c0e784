package blockfanout

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"time"
)

// smallBlock: blocks up to this size are copied behind their part header
// (into the request's reused header buffer) so that header and block go
// out in one write, one HTTP chunk and one system call; larger blocks are
// written from the shared slice itself.
const smallBlock = 4 << 10

// writePiece: larger blocks are written in pieces of at most this size,
// and each piece written counts as progress for the stall clock, so that a
// big block on a slow link is not taken for a stall.
const writePiece = 1 << 20

// errRequestAborted stops the body writer of a block/put request that its
// stream has already given up (it is being retried or was dropped).
var errRequestAborted = errors.New("blockfanout: block/put request aborted")

// putBody is the multipart body of one request: block/put (one part per
// block) or dag/import (one part holding a CARv1 stream, one section per
// block). The transport's writer goroutine reads it (WriteTo, or Read with
// other transports); it takes blocks from the session's log as they come
// and ends the body when the session is closed, when the next block has
// another prefix (block/put), or when the segment is full (dag/import).
type putBody struct {
	st       *stream
	r        *request // the request this body belongs to
	ctx      context.Context
	boundary string
	prefix   prefix // block/put: the prefix of every part
	car      bool   // dag/import: a CAR segment
	start    uint64 // first block of the request
	next     uint64 // next block to hand over
	bytes    int64  // block bytes handed over (dag/import segment size)

	hdr        []byte    // part header or section header (and small block) being written
	segs       [][]byte  // what remains to be written of the last hand-over
	arr        [2][]byte // backing array of segs
	eof        bool
	unreported int // bytes Read since the last progress report
}

// carHeader is a CARv1 header with no roots, {"roots":[],"version":1} in
// DAG-CBOR behind its length: the root of an add is known only at its end,
// and a segment is imported with pin-roots=false, so it names none. kubo
// (go-car v2's BlockReader) accepts an empty roots list.
var carHeader = []byte{0x11, 0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x80, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}

// takes reports whether blk goes into this request. A request always
// takes its first block.
func (b *putBody) takes(blk *block) bool {
	if b.next == b.start {
		return true
	}
	if !b.car {
		return blk.prefix == b.prefix
	}
	cfg := &b.st.s.f.cfg
	return int(b.next-b.start) < cfg.segmentBlocks && b.bytes+int64(len(blk.data)) <= cfg.segmentBytes
}

// frame fills b.hdr and b.segs with blk's part (block/put) or section
// (dag/import), behind the request's opening for its first block.
func (b *putBody) frame(blk *block) {
	b.hdr = b.hdr[:0]
	if b.car {
		if b.next == b.start {
			b.hdr = b.appendPartHeader(b.hdr, "blocks.car")
			b.hdr = append(b.hdr, carHeader...)
		}
		b.hdr = binary.AppendUvarint(b.hdr, uint64(len(blk.key)+len(blk.data)))
		b.hdr = append(b.hdr, blk.key...)
	} else {
		if b.next > b.start {
			b.hdr = append(b.hdr, "\r\n"...)
		}
		b.hdr = b.appendPartHeader(b.hdr, blk.name)
	}
	b.segs = b.arr[:0]
	if len(blk.data) <= smallBlock {
		b.hdr = append(b.hdr, blk.data...)
		b.segs = append(b.segs, b.hdr)
	} else {
		b.segs = append(b.segs, b.hdr, blk.data)
	}
}

func (b *putBody) appendPartHeader(dst []byte, filename string) []byte {
	dst = append(dst, "--"...)
	dst = append(dst, b.boundary...)
	dst = append(dst, "\r\nContent-Disposition: form-data; name=\"file\"; filename=\""...)
	dst = append(dst, filename...)
	return append(dst, "\"\r\nContent-Type: application/octet-stream\r\n\r\n"...)
}

// advance hands over the next part or section (or the closing delimiter),
// waiting for a block if needed. Whatever it handed over before has been
// written.
func (b *putBody) advance() error {
	st, s, r := b.st, b.st.s, b.r
	s.mu.Lock()
	for {
		if r.gen != st.epoch || r.done || st.err != nil {
			s.mu.Unlock()
			return errRequestAborted
		}
		wasOwed := st.owed()
		if r.busy {
			st.since = time.Now() // what was handed over is written
		}
		r.started, r.busy = true, false
		var blk *block
		if b.next < s.end {
			blk = s.at(b.next)
		}
		if blk != nil && b.takes(blk) {
			b.frame(blk)
			if !b.car && b.next > b.start {
				r.ackable = b.next // the delimiter in this hand-over ends the previous part
			}
			b.next++
			b.bytes += int64(len(blk.data))
			r.written, st.next = b.next, b.next
			r.busy = true
			st.touch(wasOwed)
			s.mu.Unlock()
			return nil
		}
		// A dag/import answers only at its end, so a segment also ends
		// when a Put waits for this peer: its blocks are freed only then.
		holding := b.car && s.waiting > 0 && st.acked == s.base
		if blk != nil || s.closing || holding {
			// The end of the session, of this prefix or of this segment:
			// close the body; the next request starts at b.next.
			b.hdr = append(b.hdr[:0], "\r\n--"...)
			b.hdr = append(b.hdr, b.boundary...)
			b.hdr = append(b.hdr, "--\r\n"...)
			b.segs = append(b.arr[:0], b.hdr)
			b.eof = true
			r.ackable = b.next
			r.bodyDone = true
			r.busy = true
			st.touch(wasOwed)
			wake := st.wakeLocked() // another lane may open the next segment now
			s.mu.Unlock()
			close(wake)
			return nil
		}
		wake := st.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-b.ctx.Done():
			return context.Cause(b.ctx)
		}
		s.mu.Lock()
	}
}

// progress restarts the stall clock after a piece of a large block was
// written.
func (b *putBody) progress() {
	s := b.st.s
	s.mu.Lock()
	if b.r.gen == b.st.epoch {
		b.st.since = time.Now()
	}
	s.mu.Unlock()
}

// WriteTo writes the body to w (the transport's chunked writer): each part
// header is one write and each large block one write per MiB, straight
// from the block's slice.
func (b *putBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		for len(b.segs) > 0 {
			seg := b.segs[0]
			piece := seg[:min(len(seg), writePiece)]
			m, err := w.Write(piece)
			n += int64(m)
			if err != nil {
				return n, err
			}
			if len(piece) < len(seg) {
				b.segs[0] = seg[len(piece):]
				b.progress()
				continue
			}
			b.segs = b.segs[1:]
		}
		if b.eof {
			return n, nil
		}
		if err := b.advance(); err != nil {
			return n, err
		}
	}
}

// Read implements io.Reader for transports that do not use WriteTo.
func (b *putBody) Read(p []byte) (int, error) {
	for len(b.segs) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		if err := b.advance(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.segs[0])
	b.segs[0] = b.segs[0][n:]
	if len(b.segs[0]) == 0 {
		b.segs = b.segs[1:]
	}
	if b.unreported += n; b.unreported >= writePiece {
		b.unreported = 0
		b.progress()
	}
	return n, nil
}

// Close implements io.Closer. The transport may call it concurrently with
// WriteTo; ending a request is the stream's business (its context).
func (b *putBody) Close() error { return nil }
