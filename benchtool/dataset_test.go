package benchtool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	carv2 "github.com/ipld/go-car/v2"

	"github.com/ingestd/ingestd/ingest"
)

// TestFilesBodyIsClusterMultipart: the generated body, parsed by
// mime/multipart (read in large reads, one byte at a time, and through
// WriteTo), has one part
// per entry as the cluster Go client sends them (form name "file", the
// path URL-escaped in filename, directory and file content types), and the
// content of every file is the content WriteFiles writes for the same seed.
func TestFilesBodyIsClusterMultipart(t *testing.T) {
	f := func(ds Dataset) {
		t.Helper()
		if err := ds.Normalize(); err != nil {
			t.Fatal(err)
		}
		const base = 7
		runSeed := RunSeed(base, 3)
		dir := t.TempDir()
		if err := ds.WriteFiles(dir, base, runSeed); err != nil {
			t.Fatal(err)
		}
		g := newContent(base)
		for pass, wrap := range []func(*filesBody) io.Reader{
			func(b *filesBody) io.Reader { return struct{ io.Reader }{b} },
			func(b *filesBody) io.Reader { return iotest.OneByteReader(b) },
			func(b *filesBody) io.Reader { // as net/http sends it: WriteTo
				pr, pw := io.Pipe()
				go func() {
					_, err := b.WriteTo(pw)
					pw.CloseWithError(err)
				}()
				return pr
			},
		} {
			body := newFilesBody(&ds, g, runSeed, nil)
			_, params, err := mime.ParseMediaType(body.ContentType())
			if err != nil {
				t.Fatal(err)
			}
			mr := multipart.NewReader(wrap(body), params["boundary"])
			n := 0
			for ; ; n++ {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s pass %d part %d: %v", ds.String(), pass, n, err)
				}
				e := ds.Entry(n)
				disp, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
				if err != nil || disp != "form-data" || dp["name"] != "file" {
					t.Fatalf("part %d: Content-Disposition %q", n, p.Header.Get("Content-Disposition"))
				}
				if strings.Contains(e.Path, "/") && !strings.Contains(dp["filename"], "%2F") {
					t.Fatalf("part %d: filename %q is not URL-escaped", n, dp["filename"])
				}
				name, err := url.QueryUnescape(dp["filename"])
				if err != nil || name != e.Path {
					t.Fatalf("part %d: filename %q, want %q", n, dp["filename"], e.Path)
				}
				got, err := io.ReadAll(p)
				if err != nil {
					t.Fatal(err)
				}
				onDisk := filepath.Join(dir, filepath.FromSlash(e.Path))
				if e.Dir {
					if ct := p.Header.Get("Content-Type"); ct != "application/x-directory" || len(got) != 0 {
						t.Fatalf("part %d (%s): directory with Content-Type %q and %d bytes", n, e.Path, ct, len(got))
					}
					if st, err := os.Stat(onDisk); err != nil || !st.IsDir() {
						t.Fatalf("WriteFiles made no directory %s: %v", onDisk, err)
					}
					continue
				}
				if ct := p.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Fatalf("part %d: file with Content-Type %q", n, ct)
				}
				want, err := os.ReadFile(onDisk)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(got)) != ds.FileSize || !bytes.Equal(got, want) {
					t.Fatalf("part %d (%s): %d bytes, differ from the %d on disk", n, e.Path, len(got), len(want))
				}
			}
			if n != ds.NumEntries() {
				t.Fatalf("%s: %d parts, want %d", ds.String(), n, ds.NumEntries())
			}
		}
	}
	f(Dataset{Kind: KindFile, FileSize: 3<<20 + 7})
	f(Dataset{Kind: KindTree, Dirs: 3, Files: 11, FileSize: 4096})
	f(Dataset{Kind: KindTree, Dirs: 2, Files: 2, FileSize: 5})
	f(Dataset{Kind: KindDeep, Depth: 7, Files: 2, FileSize: 10000})
	f(Dataset{Kind: KindDeep, Depth: 3, Files: 1, FileSize: 0 + 1})
}

// TestContentDistinctAcrossRuns: the same seeds give the same bytes, and no
// 4 KiB block repeats within a run or between runs, so no store can
// deduplicate one add against another.
func TestContentDistinctAcrossRuns(t *testing.T) {
	ds := Dataset{Kind: KindTree, Dirs: 4, Files: 8, FileSize: 64 << 10}
	if err := ds.Normalize(); err != nil {
		t.Fatal(err)
	}
	read := func(base uint64, run int) []byte {
		b, err := io.ReadAll(newFilesBody(&ds, newContent(base), RunSeed(base, run), nil))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(1, 0), read(1, 0)) {
		t.Fatal("same seed, different content")
	}
	seen := map[[32]byte]string{}
	for _, k := range []struct {
		base uint64
		run  int
	}{{1, 0}, {1, 1}, {1, 2}, {2, 0}} {
		g := newContent(k.base)
		rs := RunSeed(k.base, k.run)
		blk := make([]byte, genBlock)
		for i := range ds.NumEntries() {
			e := ds.Entry(i)
			for off := int64(0); off < e.Size; off += genBlock {
				g.fill(fileID(rs, e.Index), off, blk)
				sum := sha256.Sum256(blk)
				where := e.Path + "@" + string(rune('0'+k.run))
				if prev, ok := seen[sum]; ok {
					t.Fatalf("block of %s repeats %s", where, prev)
				}
				seen[sum] = where
			}
		}
	}
	if RunSeed(1, 0) == RunSeed(1, 1) || RunSeed(1, 0) == RunSeed(2, 0) {
		t.Fatal("run seeds collide")
	}
}

// TestCARIsValid: the CAR body is a CARv1 that go-car reads, its header
// names the root carRoot computed, and every block's data hashes to its
// CID.
func TestCARIsValid(t *testing.T) {
	ds := Dataset{Kind: KindTree, Dirs: 3, Files: 5, FileSize: 300 << 10, CAR: true}
	if err := ds.Normalize(); err != nil {
		t.Fatal(err)
	}
	o, err := unixfsOptions(url.Values{"cid-version": {"1"}, "chunker": {"size-65536"}})
	if err != nil {
		t.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	defer pool.Stop()
	g := newContent(1)
	ctx := context.Background()
	root, err := carRoot(ctx, &ds, g, 42, o, pool)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	if err := carBody(ctx, &body, "b0undary", &ds, g, 42, o, pool, root, nil); err != nil {
		t.Fatal(err)
	}
	p, err := multipart.NewReader(&body, "b0undary").NextPart()
	if err != nil {
		t.Fatal(err)
	}
	br, err := carv2.NewBlockReader(p)
	if err != nil {
		t.Fatal(err)
	}
	if br.Version != 1 || len(br.Roots) != 1 || !br.Roots[0].Equals(root) {
		t.Fatalf("CAR v%d roots %v, want v1 [%s]", br.Version, br.Roots, root)
	}
	blocks, haveRoot := 0, false
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.Cid().Prefix().Sum(b.RawData())
		if err != nil || !c.Equals(b.Cid()) {
			t.Fatalf("block %s hashes to %s (%v)", b.Cid(), c, err)
		}
		haveRoot = haveRoot || c.Equals(root)
		blocks++
	}
	// 15 files of 5 leaves and a node, 3 directories and the top one.
	if !haveRoot || blocks != 15*6+4 {
		t.Fatalf("%d blocks (root in them: %v), want %d", blocks, haveRoot, 15*6+4)
	}
}

func TestParseSize(t *testing.T) {
	f := func(s string, want int64, ok bool) {
		t.Helper()
		got, err := ParseSize(s)
		if (err == nil) != ok || got != want {
			t.Fatalf("ParseSize(%q) = %d, %v; want %d (ok %v)", s, got, err, want, ok)
		}
	}
	f("4096", 4096, true)
	f("4KiB", 4096, true)
	f("1GiB", 1<<30, true)
	f("1.5MiB", 3<<19, true)
	f("10MB", 10e6, true)
	f("4 kB", 4000, true)
	f("", 0, false)
	f("1XB", 0, false)
	f("-1KiB", 0, false)
	f("KiB", 0, false)
}
