package unixfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"runtime"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// TestImportLimits checks what counts against the per-upload limits: every
// entry and every directory its path implies, each with its full path.
func TestImportLimits(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	f := func(entries []string, maxEntries, maxPathBytes int, wantErr error) {
		t.Helper()
		o := unixfs.DefaultOptions()
		o.Wrap, o.MaxEntries, o.MaxPathBytes = true, maxEntries, maxPathBytes
		if err := o.Resolve(); err != nil {
			t.Fatal(err)
		}
		se := sliceEntries(entries)
		_, err := unixfs.Import(context.Background(), &se, &o, pool, ingest.DiscardSink{}, func(unixfs.Output) error { return nil })
		if !errors.Is(err, wantErr) {
			t.Fatalf("Import(%q) with %d entries and %d path bytes: error = %v, want %v", entries, maxEntries, maxPathBytes, err, wantErr)
		}
	}
	// "a/b/c/f" is 4 entries (a, a/b, a/b/c and the file) and 1+3+5+7
	// path bytes.
	f([]string{"a/b/c/f"}, 4, 16, nil)
	f([]string{"a/b/c/f"}, 3, 16, unixfs.ErrUploadLimit)
	f([]string{"a/b/c/f"}, 4, 15, unixfs.ErrUploadLimit)
	// A directory is counted once, whether its part comes first or not.
	f([]string{"a/", "a/f", "a/g"}, 3, 1+3+3, nil)
	f([]string{"a/f", "a/g", "a/"}, 3+1, 1+3+3+1, nil)
	f([]string{"a/f", "a/g", "a/"}, 3, 100, unixfs.ErrUploadLimit)
	// 0 is the default.
	f([]string{"a/b/c/f"}, 0, 0, nil)
}

// deepBody is the upload of issue 11: parts whose paths are depth levels
// deep and differ from the first level, so that every part implies depth
// new directories.
func deepBody(t testing.TB, parts, depth int) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := range parts {
		p := fmt.Sprintf("p%03d/", i) + strings.Repeat("a/", depth-2) + "f"
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, p))
		h.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.Boundary()
}

// heapSampler is an EntryReader that measures the live heap every few
// entries, after a collection: the peak is what the tree of an upload
// costs while it is being read, which is what reached 3.6 GB.
type heapSampler struct {
	r          unixfs.EntryReader
	n, every   int
	base, peak uint64
}

func newHeapSampler(r unixfs.EntryReader, every int) *heapSampler {
	s := &heapSampler{r: r, every: every}
	s.base = liveHeap()
	return s
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func (s *heapSampler) Next() (*ingestmp.Entry, error) {
	if s.n++; s.n <= 16 || s.n%s.every == 0 {
		if h := liveHeap(); h > s.base && h-s.base > s.peak {
			s.peak = h - s.base
		}
	}
	return s.r.Next()
}

// TestImportDeepImplicitDirectories sends the upload of issue 11 (400
// parts with distinct 2,040-level paths, a 1.7 MB body), which reached
// 3.6 GB: with the default limits it is refused, wrapped (the whole tree
// is kept until the end) or not (each top-level entry is built when the
// next starts), and neither the live heap nor the bytes allocated come
// near that.
func TestImportDeepImplicitDirectories(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	body, boundary := deepBody(t, 400, 2040)
	for _, wrap := range []bool{true, false} {
		o := unixfs.DefaultOptions()
		o.Wrap = wrap
		if err := o.Resolve(); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		s := newHeapSampler(ingestmp.NewReader(bytes.NewReader(body), boundary), 4)
		runtime.ReadMemStats(&before)
		_, err := unixfs.Import(context.Background(), s, &o, pool, ingest.DiscardSink{}, func(unixfs.Output) error { return nil })
		runtime.ReadMemStats(&after)
		if !errors.Is(err, unixfs.ErrUploadLimit) {
			t.Fatalf("wrap %v: Import error = %v, want ErrUploadLimit", wrap, err)
		}
		// The tree holds what DefaultMaxPathBytes lets in: about 125,000
		// directories of one child, some 20 MB.
		const limit = 64 << 20
		if s.peak > limit {
			t.Errorf("wrap %v: live heap peaked %d bytes above the start, want at most %d", wrap, s.peak, limit)
		}
		// Without wrap each top-level entry is built when the next
		// starts, and boxo allocates about 3 KB to encode a directory:
		// about 400 MB for the directories the path limit lets in.
		if got := after.TotalAlloc - before.TotalAlloc; got > 2*unixfs.DefaultMaxPathBytes {
			t.Errorf("wrap %v: allocated %d bytes, want at most %d", wrap, got, 2*unixfs.DefaultMaxPathBytes)
		}
	}
}

// TestImportMemoryBoundedByLimits pushes uploads of several shapes past
// small limits and checks that the live heap stays within a bound computed
// from the limits alone: about 150 bytes per entry, the retained paths
// (at most MaxPathBytes), and a fixed part for the reader and the pool.
func TestImportMemoryBoundedByLimits(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	const maxEntries, maxPathBytes = 20_000, 32 << 20
	const bound = 2<<20 + 256*maxEntries + 2*maxPathBytes
	o := unixfs.DefaultOptions()
	o.Wrap, o.MaxEntries, o.MaxPathBytes = true, maxEntries, maxPathBytes
	if err := o.Resolve(); err != nil {
		t.Fatal(err)
	}
	shapes := []struct {
		name string
		next func(i int) string
	}{
		{"deep distinct paths", func(i int) string { return fmt.Sprintf("p%d/", i) + strings.Repeat("a/", 2000) + "f" }},
		{"deep shared path", func(i int) string { return strings.Repeat("a/", 2000) + fmt.Sprintf("f%d", i) }},
		{"one wide directory", func(i int) string { return fmt.Sprintf("d/f%d", i) }},
		{"a directory per file", func(i int) string { return fmt.Sprintf("d%d/f", i) }},
		{"medium depth", func(i int) string { return fmt.Sprintf("d%d/", i) + strings.Repeat("bb/", 40) + "f" }},
	}
	for _, shape := range shapes {
		gen := &genEntries{next: shape.next}
		s := newHeapSampler(gen, 256)
		_, err := unixfs.Import(context.Background(), s, &o, pool, ingest.DiscardSink{}, func(unixfs.Output) error { return nil })
		if !errors.Is(err, unixfs.ErrUploadLimit) {
			t.Fatalf("%s: Import error = %v after %d entries, want ErrUploadLimit", shape.name, err, gen.i)
		}
		if s.peak > bound {
			t.Errorf("%s: live heap peaked %d bytes above the start after %d entries, want at most %d", shape.name, s.peak, gen.i, bound)
		}
	}
}

// genEntries yields empty files at the paths next makes, up to a million.
type genEntries struct {
	next func(i int) string
	i    int
}

func (g *genEntries) Next() (*ingestmp.Entry, error) {
	if g.i == 1_000_000 {
		return nil, io.EOF
	}
	g.i++
	return &ingestmp.Entry{Path: g.next(g.i), Kind: ingestmp.File, Body: bytes.NewReader(nil)}, nil
}
