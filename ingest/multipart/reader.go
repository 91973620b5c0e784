package multipart

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// Limits on what one entry may make the reader hold in memory.
const (
	// MaxSymlinkTarget is the longest symlink target accepted (PATH_MAX).
	MaxSymlinkTarget = 4096
	// MaxPathLength is the longest entry path accepted, in bytes.
	MaxPathLength = 4096
)

// Kind is the type of an entry.
type Kind int

// Kinds of entries.
const (
	File Kind = iota
	Dir
	Symlink
)

func (k Kind) String() string {
	switch k {
	case Dir:
		return "directory"
	case Symlink:
		return "symlink"
	}
	return "file"
}

// Errors wrapped by Reader.Next.
var (
	ErrMalformed = errors.New("multipart: malformed body")
	ErrTooLong   = errors.New("multipart: too long")
)

// Entry is one part of the body.
type Entry struct {
	// Path is relative, cleaned, without leading slash: "dir1/a.txt". It is
	// "" for a part without a filename.
	Path   string
	Kind   Kind
	Mode   os.FileMode // Go FileMode bits as the client sent them; 0 if none
	Mtime  time.Time   // zero if none
	Target string      // symlink target
	// Body is the content of a file. It is valid until the next call to Next.
	Body io.Reader
}

// Reader iterates over the entries of a multipart body.
type Reader struct {
	f *framer
}

// NewReader reads body, a multipart body with the given boundary. It does
// its own buffering: body needs none.
func NewReader(body io.Reader, boundary string) *Reader {
	return &Reader{f: newFramer(body, boundary)}
}

// Boundary checks a request Content-Type and returns its boundary. Like
// IPFS Cluster it accepts multipart/form-data and multipart/mixed.
func Boundary(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || (mt != "multipart/form-data" && mt != "multipart/mixed") {
		return "", fmt.Errorf("%w: request Content-Type isn't multipart/form-data", ErrMalformed)
	}
	b := params["boundary"]
	if b == "" {
		return "", fmt.Errorf("%w: no multipart boundary", ErrMalformed)
	}
	return b, nil
}

// Next returns the next entry, or io.EOF after the last one. The body of the
// previous entry is skipped if it was not read. A body that ends before
// the final delimiter is an error wrapping io.ErrUnexpectedEOF.
func (r *Reader) Next() (*Entry, error) {
	h, err := r.f.next()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read part: %w", ErrMalformed, err)
	}
	disposition, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	e := &Entry{Path: fileName(dparams)}
	if len(e.Path) > MaxPathLength {
		return nil, fmt.Errorf("%w: path of %d bytes (limit %d)", ErrTooLong, len(e.Path), MaxPathLength)
	}
	if disposition == "form-data" {
		e.Mode, e.Mtime = fileInfo(dparams["name"])
	}
	body := r.f.partReader(h)
	ct := h.Get("Content-Type")
	if ct != "" {
		if ct, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, fmt.Errorf("%w: part %q: bad Content-Type: %w", ErrMalformed, e.Path, err)
		}
	}
	switch ct {
	case "multipart/form-data", "application/x-directory":
		e.Kind = Dir
	case "application/symlink":
		e.Kind = Symlink
		t, err := io.ReadAll(io.LimitReader(body, MaxSymlinkTarget+1))
		if err != nil {
			return nil, fmt.Errorf("%w: symlink %q: %w", ErrMalformed, e.Path, unexpected(err))
		}
		if len(t) > MaxSymlinkTarget {
			return nil, fmt.Errorf("%w: symlink %q target exceeds %d bytes", ErrTooLong, e.Path, MaxSymlinkTarget)
		}
		e.Target = string(t)
	default:
		e.Kind = File
		e.Body = bodyReader{body}
	}
	return e, nil
}

// bodyReader turns the multipart package's EOF-in-the-middle errors into
// io.ErrUnexpectedEOF, so that a truncated upload is reported as such.
type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(buf []byte) (int, error) {
	n, err := b.r.Read(buf)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: cannot read part body: %w", ErrMalformed, unexpected(err))
	}
	return n, err
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fileName is the entry path from the Content-Disposition parameters.
func fileName(params map[string]string) string {
	name := params["filename"]
	if u, err := url.QueryUnescape(name); err == nil {
		name = u
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// fileInfo parses mode and mtime from a form name "file?mode=0644&mtime=…".
func fileInfo(formName string) (os.FileMode, time.Time) {
	_, q, ok := strings.Cut(formName, "?")
	if !ok {
		return 0, time.Time{}
	}
	params, err := url.ParseQuery(q)
	if err != nil {
		return 0, time.Time{}
	}
	var mode os.FileMode
	if v := params.Get("mode"); v != "" {
		if m, err := strconv.ParseUint(v, 8, 32); err == nil {
			mode = os.FileMode(m)
		}
	}
	// As boxo: once the form name has a query, the mtime is set (to the Unix
	// epoch when absent), unless mtime does not parse.
	var secs, nsecs int64
	if v, ok := params["mtime"]; ok {
		if secs, err = strconv.ParseInt(v[0], 10, 64); err != nil {
			return mode, time.Time{}
		}
	}
	if v, ok := params["mtime-nsecs"]; ok {
		nsecs, _ = strconv.ParseInt(v[0], 10, 64)
	}
	return mode, time.Unix(secs, nsecs)
}
