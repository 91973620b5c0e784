package unixfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"testing"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// oneFile yields a single file entry with the given body.
type oneFile struct {
	body io.Reader
	done bool
}

func (f *oneFile) Next() (*ingestmp.Entry, error) {
	if f.done {
		return nil, io.EOF
	}
	f.done = true
	return &ingestmp.Entry{Path: "f", Kind: ingestmp.File, Body: f.body}, nil
}

// failAfter returns n bytes of data and then err, as a connection that
// breaks would.
func failAfter(n int, err error) io.Reader {
	return io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{'x'}, n)), errReader{err})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

var errBroken = errors.New("connection broken")

// TestImportReadError checks that a read error inside a file ends the
// import with that error, at once, and that no CID is reported for the
// file, wherever in the file the error falls: at the start, inside a chunk,
// at a chunk boundary, and at the layout boundaries of both layouts (after
// 174 chunks the balanced layout goes one level deeper, which used to build
// the truncated file; issue 11). A bare io.ErrUnexpectedEOF, which boxo's
// size splitter takes for the end of the file, must not end it either.
func TestImportReadError(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	const chunk = 1024
	f := func(layout string, n int, readErr error) {
		t.Helper()
		o := unixfs.DefaultOptions()
		o.Chunker = fmt.Sprintf("size-%d", chunk)
		o.Trickle = layout == "trickle"
		o.Progress = true
		if err := o.Resolve(); err != nil {
			t.Fatal(err)
		}
		for run := range 2 { // a second run catches state left in pooled objects
			var cids []string
			roots, err := unixfs.Import(context.Background(), &oneFile{body: failAfter(n, readErr)}, &o, pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
				if !out.IsProgress() {
					cids = append(cids, out.Name+" "+out.Cid.String())
				}
				return nil
			})
			if !errors.Is(err, readErr) {
				t.Errorf("%s, error after %d bytes (run %d): Import error = %v, want %v", layout, n, run, err, readErr)
			}
			if roots != nil || cids != nil {
				t.Errorf("%s, error after %d bytes (run %d): roots %v, outputs %q; want none", layout, n, run, roots, cids)
			}
		}
	}
	for _, layout := range []string{"balanced", "trickle"} {
		for _, readErr := range []error{errBroken, io.ErrUnexpectedEOF} {
			f(layout, 0, readErr)
			f(layout, chunk/2, readErr)
			f(layout, chunk, readErr)
			f(layout, 3*chunk, readErr)
			f(layout, 3*chunk+1, readErr)
			f(layout, 174*chunk, readErr) // balanced: the 175th chunk starts a new level
			f(layout, 175*chunk, readErr)
			// trickle with 174 links: 174 leaves, then 4 subtrees of depth 1.
			f(layout, (174+4*174)*chunk, readErr)
		}
	}
}

// TestImportReadErrorMultipart checks the same through the multipart body
// of /add: a transport error in the middle of the first file fails the add
// with that error at once, not at the next part, and reports no CID for
// the file even when the error falls at the 175th chunk.
func TestImportReadErrorMultipart(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, name := range []string{"a", "b"} {
		w, err := mw.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(bytes.Repeat([]byte(name), 200*1024)); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	fileStart := bytes.Index(body.Bytes(), bytes.Repeat([]byte{'a'}, 64))
	o := unixfs.DefaultOptions()
	o.Chunker = "size-1024"
	if err := o.Resolve(); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{1024, 174 * 1024, 174*1024 + 5} {
		upload := io.MultiReader(bytes.NewReader(body.Bytes()[:fileStart+at]), errReader{errBroken})
		var names []string
		roots, err := unixfs.Import(context.Background(), ingestmp.NewReader(upload, mw.Boundary()), &o, pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
			names = append(names, out.Name)
			return nil
		})
		if !errors.Is(err, errBroken) {
			t.Errorf("error at byte %d of file a: Import error = %v, want %v", at, err, errBroken)
		}
		if roots != nil || names != nil {
			t.Errorf("error at byte %d of file a: roots %v, outputs %q; want none", at, roots, names)
		}
	}
}
