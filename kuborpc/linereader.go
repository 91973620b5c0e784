package kuborpc

import (
	"bytes"
	"fmt"
	"io"
)

// LineReader reads the lines of an NDJSON answer, each at most
// MaxLineSize bytes with its newline. It is bufio.Scanner with a bounded, growing buffer
// and an error that IsPermanent recognises; it is not safe for concurrent
// use.
type LineReader struct {
	r   io.Reader
	buf []byte
	beg int // unread data is buf[beg:end]
	end int
	err error // from the last Read, returned once the buffer is used up
}

// NewLineReader returns a LineReader reading r. Its buffer starts at 4 KiB
// and doubles, up to MaxLineSize, for longer lines.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{r: r, buf: make([]byte, 4096)}
}

// Next returns the next non-empty line, without its newline and the
// spaces around it; the slice is valid until the next call. A last line
// without a newline is returned too. At the end it returns io.EOF; a line
// that does not fit in MaxLineSize bytes fails with a permanent error; a read error is
// returned as is.
func (l *LineReader) Next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(l.buf[l.beg:l.end], '\n'); i >= 0 {
			line := bytes.TrimSpace(l.buf[l.beg : l.beg+i])
			l.beg += i + 1
			if len(line) > 0 {
				return line, nil
			}
			continue
		}
		if l.err != nil {
			line := bytes.TrimSpace(l.buf[l.beg:l.end])
			l.beg = l.end
			if len(line) > 0 && l.err == io.EOF {
				return line, nil
			}
			return nil, l.err
		}
		if l.beg > 0 {
			l.end = copy(l.buf, l.buf[l.beg:l.end])
			l.beg = 0
		}
		if l.end == len(l.buf) {
			if len(l.buf) >= MaxLineSize {
				return nil, Permanent(fmt.Errorf("cannot read answer: line longer than %d bytes", MaxLineSize))
			}
			l.buf = append(l.buf, make([]byte, min(len(l.buf), MaxLineSize-len(l.buf)))...)
		}
		var n int
		n, l.err = l.r.Read(l.buf[l.end:])
		l.end += n
	}
}
