package car

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	bufpool "github.com/libp2p/go-buffer-pool"
	"github.com/multiformats/go-varint"
)

// readBufferSize is the buffer between the upload and the parser. A block
// longer than this is allocated only once this much of it has arrived (see
// readData).
const readBufferSize = 64 << 10

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// input is the CAR stream with its position, which CARv2 offsets and error
// messages refer to. Only one goroutine uses it at a time: Import while it
// reads the headers, then the reader goroutine.
type input struct {
	br  *bufio.Reader
	pos uint64 // bytes consumed since the start of the CAR

	v2  bool   // reading the data payload of a CARv2
	end uint64 // with v2: offset of the first byte after the data payload
}

func newInput(ctx context.Context, r io.Reader) *input {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(&ctxReader{r: r, done: ctx.Done(), ctx: ctx})
	return &input{br: br}
}

// ctxReader ends the reading of a CAR once the import's context is done:
// each Read first checks it, so that a cancelled import stops at the next
// Read of a slow upload instead of reading on to the end of a 2 MiB block.
// A Read already blocked in r cannot be interrupted: the caller must close
// r (the REST layer closes the connection).
type ctxReader struct {
	r    io.Reader
	done <-chan struct{}
	ctx  context.Context
}

func (c *ctxReader) Read(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, c.ctx.Err()
	default:
	}
	return c.r.Read(p)
}

// release returns the buffer to the pool; in must not be used afterwards.
func (in *input) release() {
	in.br.Reset(nil)
	readerPool.Put(in.br)
	in.br = nil
}

func (in *input) ReadByte() (byte, error) {
	b, err := in.br.ReadByte()
	if err == nil {
		in.pos++
	}
	return b, err
}

// readFull fills p. It returns io.EOF only if nothing was read.
func (in *input) readFull(p []byte) error {
	n, err := io.ReadFull(in.br, p)
	in.pos += uint64(n)
	return err
}

// skip consumes n bytes without keeping them.
func (in *input) skip(n uint64) error {
	for n > 0 {
		step := int(min(n, readBufferSize))
		d, err := in.br.Discard(step)
		in.pos += uint64(d)
		n -= uint64(d)
		if err != nil {
			return err
		}
	}
	return nil
}

func (in *input) uvarint() (uint64, error) { return varint.ReadUvarint(in) }

// readData reads a block of n bytes, n already checked against MaxBlockSize.
// A section header claims n in a few bytes of input; so that a slow or
// truncated upload cannot make the importer hold MaxBlockSize for each such
// header, a block longer than the read buffer is allocated only once a full
// buffer of it has arrived. That costs no copy: the bytes are copied out of
// the buffer either way.
func (in *input) readData(n int) ([]byte, error) {
	if n > in.br.Size() {
		if _, err := in.br.Peek(in.br.Size()); err != nil {
			return nil, err
		}
	}
	// From the buffer pool: the importer gives it back once a copying sink
	// has stored the block (see importer.consume).
	data := bufpool.Get(n)
	return data, in.readFull(data)
}

// fail turns a read error inside what into the error Import returns: a
// truncated stream or a bad varint is a malformed CAR; anything else is the
// transport's error, passed on.
func (in *input) fail(what string, err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		end := in.pos + uint64(in.br.Buffered())
		return fmt.Errorf("cannot read %s: the stream ends at offset %d: %w: %w", what, end, ErrMalformed, io.ErrUnexpectedEOF)
	case errors.Is(err, varint.ErrOverflow):
		return fmt.Errorf("cannot read %s: varint longer than 9 bytes: %w", what, ErrMalformed)
	case errors.Is(err, varint.ErrNotMinimal):
		return fmt.Errorf("cannot read %s: varint not minimally encoded: %w", what, ErrMalformed)
	default:
		return fmt.Errorf("cannot read %s: %w", what, err)
	}
}

// payloadLeft is how many bytes of the CARv2 data payload are unread; 0 once
// a read has crossed its end.
func (in *input) payloadLeft() uint64 {
	if in.pos > in.end {
		return 0
	}
	return in.end - in.pos
}
