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
	"slices"
	"strings"
	"testing"

	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// fuzzBoundary is the boundary of every fuzzed body.
const fuzzBoundary = "fuzzboundary"

// fuzzSeed is the body of parts with fuzzBoundary.
func fuzzSeed(f *testing.F, parts []httpPart) []byte {
	f.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary(fuzzBoundary); err != nil {
		f.Fatal(err)
	}
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, p.filename))
		h.Set("Content-Type", p.contentType)
		w, err := mw.CreatePart(h)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := io.WriteString(w, p.body); err != nil {
			f.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzErrors are the classes every error for an upload must fall in: the
// input is in memory, so there is no transport error to pass on.
var fuzzErrors = []error{
	unixfs.ErrBadEntry, unixfs.ErrUploadLimit, unixfs.ErrNoFiles, unixfs.ErrBadOption,
	ingestmp.ErrMalformed, ingestmp.ErrTooLong, io.ErrUnexpectedEOF,
}

// FuzzImportUpload feeds arbitrary multipart bodies through Import, the
// parser of entry paths into a tree, with and without wrap and with
// hash=identity (the second input picks the variant), seeded with the
// HTTP conformance uploads. It must not
// panic, must fail only with a known class of error, must give the same
// outputs twice, must end with its last root, and must allocate no more
// than its (small) limits and the input's size allow. Run it with
// `go test -run '^$' -fuzz FuzzImportUpload -fuzztime 30s ./ingest/unixfs`.
func FuzzImportUpload(f *testing.F) {
	var seeds [][]byte
	for _, c := range httpCases() {
		if b := fuzzSeed(f, c.parts); len(b) <= 4<<10 {
			seeds = append(seeds, b) // the large ones cost the short CI run its time
		}
	}
	seeds = append(seeds,
		fuzzSeed(f, []httpPart{filePart("a/b/c/d", "x"), filePart("a/b/e", "y"), dirPart("a"), linkPart("a/l", "b")}),
		// Over the limits: a path of 2,040 levels implies directories
		// whose paths add up to about 4 MB.
		fuzzSeed(f, []httpPart{filePart(strings.Repeat("a/", 2039)+"f", "x")}))
	for i, b := range seeds {
		f.Add(b, uint8(i))
	}
	pool := ingest.NewHashPool(2)
	f.Cleanup(pool.Stop)
	const maxEntries, maxPathBytes = 4096, 1 << 20
	var variants []unixfs.Options
	for _, wrap := range []bool{false, true} {
		for _, hash := range []uint64{mh.SHA2_256, mh.IDENTITY} {
			o := unixfs.DefaultOptions()
			o.Chunker, o.Wrap, o.HashFunc = "size-1024", wrap, hash
			o.MaxEntries, o.MaxPathBytes = maxEntries, maxPathBytes
			if err := o.Resolve(); err != nil {
				f.Fatal(err)
			}
			variants = append(variants, o)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, variant uint8) {
		o := variants[int(variant)%len(variants)]
		var outs [2][]string
		var errs [2]error
		for run := range 2 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var last unixfs.Output
			roots, err := unixfs.Import(context.Background(), ingestmp.NewReader(bytes.NewReader(body), fuzzBoundary), &o, pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
				outs[run] = append(outs[run], fmt.Sprintf("%q %s", out.Name, out.Cid))
				last = out
				return nil
			})
			runtime.ReadMemStats(&after)
			errs[run] = err
			if err != nil && !slices.ContainsFunc(fuzzErrors, func(e error) bool { return errors.Is(err, e) }) {
				t.Fatalf("wrap %v hash %d: error of no known class: %v", o.Wrap, o.HashFunc, err)
			}
			if err == nil && (len(roots) == 0 || !last.Cid.Equals(roots[len(roots)-1])) {
				t.Fatalf("wrap %v hash %d: roots %v, outputs %q: the last output must be the last root", o.Wrap, o.HashFunc, roots, outs[run])
			}
			// The framer's buffer, a chunk per file, about 3 KB of
			// boxo encoding per directory, and the paths.
			limit := uint64(2<<20 + 4<<10*maxEntries + 4*maxPathBytes + 64*len(body))
			if got := after.TotalAlloc - before.TotalAlloc; got > limit {
				t.Fatalf("wrap %v hash %d: allocated %d bytes for a %d-byte body, limit %d", o.Wrap, o.HashFunc, got, len(body), limit)
			}
		}
		if !slices.Equal(outs[0], outs[1]) || (errs[0] == nil) != (errs[1] == nil) {
			t.Fatalf("wrap %v hash %d: two runs differ: %q (%v) and %q (%v)", o.Wrap, o.HashFunc, outs[0], errs[0], outs[1], errs[1])
		}
	})
}
