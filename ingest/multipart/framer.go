package multipart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

// Bounds on what the framer reads from the network into memory.
const (
	// bufferSize is the framer's read buffer: part headers, delimiter lines
	// and the bytes around a delimiter pass through it.
	bufferSize = 256 << 10
	// maxLineLength bounds the delimiter and preamble lines. It is the
	// bufio buffer of mime/multipart, so the same bodies are accepted.
	maxLineLength = 4096
	// MaxHeaderBytes bounds the header block of one part.
	MaxHeaderBytes = 64 << 10
	// directReadMin: reads at least this large bypass the buffer, taking
	// along what is still buffered if that is at most half of the read.
	directReadMin = 4 << 10
)

// errNoProgress: the body's reader keeps returning nothing.
var errNoProgress = errors.New("multipart: body reader returns no data")

// framer splits a multipart body into parts with the grammar and quirks of
// mime/multipart, which is what IPFS Cluster and kubo parse uploads with:
// the same preamble and transport-padding rules, LF-only line endings when
// the first delimiter line uses them, the delimiter recognised only when
// followed by "--", white space, a line end or the end of the body, and
// quoted-printable part bodies decoded.
//
// It exists for speed. mime/multipart moves every byte of a part through a
// 4 KiB bufio.Reader, in 4 KiB steps, and copies it twice; on an upload
// that is most of the CPU time the reading goroutine spends. The framer
// reads a part's body straight into the caller's buffer (one copy, from the
// kernel), scans it for the delimiter in place and keeps back only what
// follows a delimiter or might begin one.
//
// Buffer ownership: buf belongs to the framer. A part body's bytes are
// copied out of it or were read into the caller's slice, never aliased.
type framer struct {
	src    io.Reader
	buf    []byte
	r, w   int   // buf[r:w] is read from src and not consumed
	srcErr error // src's error, met once buf[r:w] is used up

	nl               []byte // "\r\n", or "\n" after an LF-only first delimiter line
	nlDashBoundary   []byte // nl + "--" + boundary: ends a part's body
	dashBoundaryDash []byte // "--" + boundary + "--": the final delimiter line
	dashBoundary     []byte // "--" + boundary: a delimiter line

	partsRead int
	cur       *partBody
}

// maxHeaders is mime/multipart's limit on the header fields of a part.
const maxHeaders = 10000

func newFramer(src io.Reader, boundary string) *framer {
	b := []byte("\r\n--" + boundary + "--")
	return &framer{
		src:              src,
		buf:              make([]byte, bufferSize),
		nl:               b[:2],
		nlDashBoundary:   b[:len(b)-2],
		dashBoundaryDash: b[2:],
		dashBoundary:     b[2 : len(b)-2],
	}
}

// fill reads more of src into buf, at most limit bytes, moving the unread
// bytes to its start. It returns src's error once there is nothing new.
func (f *framer) fill(limit int) error {
	if f.srcErr != nil {
		return f.srcErr
	}
	if f.r > 0 {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	if f.w == len(f.buf) {
		return fmt.Errorf("%w: read buffer full", ErrTooLong)
	}
	for range 100 {
		n, err := f.src.Read(f.buf[f.w:min(len(f.buf), f.w+limit)])
		f.w += n
		if err != nil {
			f.srcErr = err
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	f.srcErr = errNoProgress
	return f.srcErr
}

// readLine returns the next line, with its line end, as bufio.ReadSlice
// would: at the end of the body it returns what is left with the error. The
// line is valid until the next read.
func (f *framer) readLine(max int) ([]byte, error) {
	for {
		if i := bytes.IndexByte(f.buf[f.r:f.w], '\n'); i >= 0 && i < max {
			line := f.buf[f.r : f.r+i+1]
			f.r += i + 1
			return line, nil
		}
		if f.w-f.r >= max {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrTooLong, max)
		}
		if err := f.fill(len(f.buf)); err != nil {
			line := f.buf[f.r:f.w]
			f.r = f.w
			return line, err
		}
	}
}

// next returns the header of the next part, whose body is then read with
// f.cur, or io.EOF after the final delimiter. The body of the current part
// is skipped if it was not read.
func (f *framer) next() (textproto.MIMEHeader, error) {
	if len(f.dashBoundary) == 2 {
		return nil, errors.New("boundary is empty")
	}
	if f.cur != nil {
		if _, err := io.Copy(io.Discard, f.cur); err != nil {
			return nil, fmt.Errorf("cannot skip part body: %w", err)
		}
		f.cur = nil
	}
	expectNewPart := false
	for {
		line, err := f.readLine(maxLineLength)
		if err == io.EOF && f.isFinalBoundary(line) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, unexpected(err)
		}
		if f.isBoundaryDelimiterLine(line) {
			f.partsRead++
			h, err := f.readHeader()
			if err != nil {
				return nil, err
			}
			f.cur = &partBody{f: f}
			return h, nil
		}
		if f.isFinalBoundary(line) {
			return nil, io.EOF
		}
		if expectNewPart {
			return nil, fmt.Errorf("expecting a new part; got line %q", truncate(line))
		}
		if f.partsRead == 0 {
			continue // preamble
		}
		// The line end between the previous body and the delimiter line.
		if bytes.Equal(line, f.nl) {
			expectNewPart = true
			continue
		}
		return nil, fmt.Errorf("unexpected line %q", truncate(line))
	}
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// isFinalBoundary matches `^--boundary--[ \t]*(\r\n)?$`.
func (f *framer) isFinalBoundary(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, f.dashBoundaryDash)
	if !ok {
		return false
	}
	rest = skipLWSP(rest)
	return len(rest) == 0 || bytes.Equal(rest, f.nl)
}

// isBoundaryDelimiterLine matches `^--boundary[ \t]*\r\n$`; a first one
// that ends in a bare "\n" switches the framer to LF line ends, as
// mime/multipart does.
func (f *framer) isBoundaryDelimiterLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, f.dashBoundary)
	if !ok {
		return false
	}
	rest = skipLWSP(rest)
	if f.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		f.nl = f.nl[1:]
		f.nlDashBoundary = f.nlDashBoundary[1:]
	}
	return bytes.Equal(rest, f.nl)
}

func skipLWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// readHeader reads a part's header block, at most MaxHeaderBytes, and
// parses it with net/textproto as mime/multipart does.
func (f *framer) readHeader() (textproto.MIMEHeader, error) {
	var block []byte
	for {
		line, err := f.readLine(MaxHeaderBytes + 1 - len(block))
		if errors.Is(err, ErrTooLong) || len(block)+len(line) > MaxHeaderBytes {
			return nil, fmt.Errorf("%w: part header over %d bytes", ErrTooLong, MaxHeaderBytes)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read part header: %w", unexpected(err))
		}
		block = append(block, line...)
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
			break
		}
	}
	tr := textproto.NewReader(bufio.NewReaderSize(bytes.NewReader(block), 512))
	h, err := tr.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("cannot parse part header: %w", unexpected(err))
	}
	n := 0
	for _, v := range h {
		n += len(v)
	}
	if n > maxHeaders {
		return nil, fmt.Errorf("%w: part header has %d fields (limit %d)", ErrTooLong, n, maxHeaders)
	}
	return h, nil
}

// partBody reads one part's body up to its delimiter.
type partBody struct {
	f       *framer
	n       int   // buf[f.r:f.r+n] is known to be body
	total   int64 // body bytes returned so far
	err     error // met once n is 0: io.EOF at the delimiter, or a read error
	readErr error // src's error as the scanner sees it
}

func (p *partBody) Read(d []byte) (int, error) {
	f := p.f
	if len(d) == 0 {
		return 0, nil
	}
	for p.n == 0 && p.err == nil {
		if f.srcErr == nil && len(d) >= directReadMin && f.w-f.r <= len(d)/2 {
			if k, ok := p.readDirect(d); ok {
				return k, nil
			}
			continue
		}
		p.n, p.err = scanUntilBoundary(f.buf[f.r:f.w], f.dashBoundary, f.nlDashBoundary, p.total, p.readErr)
		if p.n == 0 && p.err == nil {
			// Read little more than the caller asked for, so that the
			// next, larger read finds the buffer empty and goes direct.
			if err := f.fill(max(len(d), directReadMin) + len(f.nlDashBoundary) + 2); err != nil {
				p.readErr = err
				if err == io.EOF {
					p.readErr = io.ErrUnexpectedEOF
				}
			}
		}
	}
	if p.n == 0 {
		return 0, p.err
	}
	n := copy(d[:min(len(d), p.n)], f.buf[f.r:])
	f.r += n
	p.n -= n
	p.total += int64(n)
	if p.n == 0 {
		return n, p.err
	}
	return n, nil
}

// readDirect reads from src into d, after the few bytes still buffered
// (the possible start of a delimiter that ended the previous read), and
// keeps in d what is body; the rest (a delimiter and what follows it, or
// what may begin one) goes back to the buffer. It reports false when
// nothing in d was body yet.
func (p *partBody) readDirect(d []byte) (int, bool) {
	f := p.f
	d = d[:min(len(d), len(f.buf))]
	carry := copy(d, f.buf[f.r:f.w])
	n, err := f.src.Read(d[carry:])
	n += carry
	if err != nil {
		f.srcErr = err
		p.readErr = err
		if err == io.EOF {
			p.readErr = io.ErrUnexpectedEOF
		}
	}
	k, serr := scanUntilBoundary(d[:n], f.dashBoundary, f.nlDashBoundary, p.total, p.readErr)
	f.r, f.w = 0, copy(f.buf, d[k:n])
	if k == 0 {
		if serr != nil {
			p.err = serr
		} else if n == carry && err == nil {
			// A reader that returns nothing: let fill count the retries.
			if ferr := f.fill(len(f.buf)); ferr != nil {
				p.readErr = ferr
			}
		}
		return 0, false
	}
	p.total += int64(k)
	p.err = serr
	return k, true
}

// scanUntilBoundary is mime/multipart's: it returns how many bytes of buf
// are body, and the error to report after them: io.EOF when a delimiter
// follows, readErr when buf ends the body. (0, nil) means more input is
// needed to decide.
func scanUntilBoundary(buf, dashBoundary, nlDashBoundary []byte, total int64, readErr error) (int, error) {
	if total == 0 {
		// At beginning of body, allow dashBoundary.
		if bytes.HasPrefix(buf, dashBoundary) {
			switch matchAfterPrefix(buf, dashBoundary, readErr) {
			case -1:
				return len(dashBoundary), nil
			case 0:
				return 0, nil
			case +1:
				return 0, io.EOF
			}
		}
		if bytes.HasPrefix(dashBoundary, buf) {
			return 0, readErr
		}
	}
	if i := bytes.Index(buf, nlDashBoundary); i >= 0 {
		switch matchAfterPrefix(buf[i:], nlDashBoundary, readErr) {
		case -1:
			return i + len(nlDashBoundary), nil
		case 0:
			return i, nil
		case +1:
			return i, io.EOF
		}
	}
	if bytes.HasPrefix(nlDashBoundary, buf) {
		return 0, readErr
	}
	// Up to the last line end is body; from it on too, unless it may begin
	// a delimiter.
	i := bytes.LastIndexByte(buf, nlDashBoundary[0])
	if i >= 0 && bytes.HasPrefix(nlDashBoundary, buf[i:]) {
		return i, nil
	}
	return len(buf), readErr
}

// matchAfterPrefix is mime/multipart's: +1 when the delimiter prefix at the
// start of buf is followed by "--", white space, a line end or the end of
// the body; -1 when by anything else; 0 when more input is needed.
func matchAfterPrefix(buf, prefix []byte, readErr error) int {
	if len(buf) == len(prefix) {
		if readErr != nil {
			return +1
		}
		return 0
	}
	c := buf[len(prefix)]
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
		return +1
	}
	if c == '-' {
		if len(buf) == len(prefix)+1 {
			if readErr != nil {
				return -1
			}
			return 0
		}
		if buf[len(prefix)+1] == '-' {
			return +1
		}
	}
	return -1
}

// partReader returns the body of the current part, decoding it as
// mime/multipart's NextPart does when it is quoted-printable.
func (f *framer) partReader(h textproto.MIMEHeader) io.Reader {
	const cte = "Content-Transfer-Encoding"
	if strings.EqualFold(h.Get(cte), "quoted-printable") {
		h.Del(cte)
		return quotedprintable.NewReader(f.cur)
	}
	return f.cur
}
