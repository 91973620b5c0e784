package unixfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// slowReader serves n bytes one per Read, as a slow but live client would,
// and calls cancel in the Read that reaches cancelAt. It counts the Reads
// made after that one: an import that observes its context makes none, one
// that does not reads on to the end of the file.
type slowReader struct {
	left, cancelAt int
	cancel         context.CancelFunc
	canceled       bool
	readsLate      int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.canceled {
		r.readsLate++
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.left == r.cancelAt && !r.canceled {
		r.cancel()
		r.canceled = true
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = byte(r.left)
	r.left--
	return 1, nil
}

// cancelOptions is a small chunker, so that a file of a few chunks has
// leaves on the pool and parents to build when the cancel comes.
func cancelOptions(t *testing.T, wrap bool) *unixfs.Options {
	t.Helper()
	o := unixfs.DefaultOptions()
	o.Chunker, o.Wrap = "size-256", wrap
	if err := o.Resolve(); err != nil {
		t.Fatal(err)
	}
	return &o
}

// TestImportCanceledInFile checks that a context canceled while a slow
// client is still sending a file ends the import with the context's error
// at the next Read, with no CID for the file and no root. The reader stays
// alive and would deliver the whole file: an import that ignored its
// context would finish it.
func TestImportCanceledInFile(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	const size = 64 << 10
	for _, at := range []int{size, size / 2, 300, 1} { // bytes still to come
		ctx, cancel := context.WithCancel(context.Background())
		r := &slowReader{left: size, cancelAt: at, cancel: cancel}
		var cids []string
		roots, err := unixfs.Import(ctx, &oneFile{body: r}, cancelOptions(t, false), pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
			cids = append(cids, out.Name+" "+out.Cid.String())
			return nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled %d bytes before the end: error = %v, want context.Canceled", at, err)
		}
		if roots != nil || cids != nil {
			t.Errorf("canceled %d bytes before the end: roots %v, outputs %q; want none", at, roots, cids)
		}
		if r.readsLate > 0 {
			t.Errorf("canceled %d bytes before the end: %d Reads after the cancel, want 0", at, r.readsLate)
		}
	}
}

// manyDirs yields empty directories (entries that read no body, so only
// the loop over the entries can see the cancel) until it has yielded
// cancelAfter of them, then cancels and goes on; it counts the calls to
// Next after the cancel.
type manyDirs struct {
	n, cancelAfter int
	cancel         context.CancelFunc
	nextLate       int
}

func (m *manyDirs) Next() (*ingestmp.Entry, error) {
	if m.n >= m.cancelAfter {
		m.nextLate++
	}
	m.n++
	if m.n == m.cancelAfter {
		m.cancel()
	}
	if m.n > 1000 {
		return nil, io.EOF
	}
	return &ingestmp.Entry{Path: fmt.Sprintf("d/s%d", m.n), Kind: ingestmp.Dir}, nil
}

// TestImportCanceledBetweenEntries checks that the loop over the entries
// of an upload stops at the next entry once the context is done.
func TestImportCanceledBetweenEntries(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &manyDirs{cancelAfter: 3, cancel: cancel}
	roots, err := unixfs.Import(ctx, m, cancelOptions(t, true), pool, ingest.DiscardSink{}, func(unixfs.Output) error { return nil })
	if !errors.Is(err, context.Canceled) || roots != nil {
		t.Fatalf("Import = %v, %v; want no roots and context.Canceled", roots, err)
	}
	if m.nextLate > 0 {
		t.Fatalf("Next called %d times after the cancel, want 0", m.nextLate)
	}
}

// dirEntries yields one file in each of n directories.
type dirEntries struct{ n, i int }

func (d *dirEntries) Next() (*ingestmp.Entry, error) {
	if d.i == d.n {
		return nil, io.EOF
	}
	d.i++
	return &ingestmp.Entry{Path: fmt.Sprintf("d%03d/f", d.i), Kind: ingestmp.File, Body: bytes.NewReader([]byte{byte(d.i)})}, nil
}

// TestImportCanceledInDirectories checks that building the directories of
// a wrapped upload, after its last entry, stops at the next directory once
// the context is done: no directory after it and no wrapper is emitted.
func TestImportCanceledInDirectories(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dirsEmitted := 0
	roots, err := unixfs.Import(ctx, &dirEntries{n: 10}, cancelOptions(t, true), pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
		if out.Name != "" && !bytes.HasSuffix([]byte(out.Name), []byte("/f")) {
			dirsEmitted++
			cancel() // after the first directory is built
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || roots != nil {
		t.Fatalf("Import = %v, %v; want no roots and context.Canceled", roots, err)
	}
	if dirsEmitted != 1 {
		t.Fatalf("%d directories emitted, want 1 (the one whose output canceled)", dirsEmitted)
	}
}
