package car_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	gocar "github.com/ipld/go-car/v2"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
)

// sentinels are the errors every failure for a bad CAR must wrap one of.
var sentinels = []error{
	car.ErrBlockTooLarge, car.ErrHeaderTooLarge, car.ErrHashMismatch, car.ErrUnsupportedHash,
	car.ErrBadRoots, car.ErrMissingBlock, car.ErrUnsupportedCodec, car.ErrUnsupportedVersion, car.ErrMalformed,
}

// goCarBlocks lists a CAR's blocks with go-car's verifying BlockReader, as
// the reference for what Import must hand to the sink.
func goCarBlocks(t *testing.T, data []byte) (roots []cid.Cid, blocks map[string][]byte, size uint64) {
	t.Helper()
	br, err := gocar.NewBlockReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("go-car cannot read the CAR: %v", err)
	}
	blocks = map[string][]byte{}
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("go-car cannot read the CAR: %v", err)
		}
		size += uint64(len(b.RawData()))
		blocks[b.Cid().KeyString()] = b.RawData()
	}
	return br.Roots, blocks, size
}

// TestImportCorpus runs every file of testdata/ twice through one pool, so
// that state leaking from one import to the next (pooled read buffers, the
// shared HashPool) shows. A valid file must give go-car's roots and blocks;
// a bad one must fail with its sentinel, and the message must name what is
// at fault: the values named are computed from the corpus generator's
// DAGs and the file, never copied from an earlier message.
func TestImportCorpus(t *testing.T) {
	pool := ingest.NewHashPool(4)
	defer pool.Stop()
	d := newTestDAGs()
	tested := map[string]bool{}
	read := func(name string) []byte {
		t.Helper()
		tested[name] = true
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}

	valid := func(name string, root cid.Cid) {
		t.Helper()
		data := read(name)
		for run := range 2 {
			sink := &memSink{}
			res, err := car.Import(context.Background(), bytes.NewReader(data), pool, sink)
			if err != nil {
				t.Fatalf("%s (run %d): %v", name, run, err)
			}
			roots, blocks, size := goCarBlocks(t, data)
			if !slices.Equal(res.Roots, roots) || !res.Roots[0].Equals(root) {
				t.Fatalf("%s: roots = %v, want %v (go-car) and %s (the generator)", name, res.Roots, roots, root)
			}
			if res.Bytes != size {
				t.Fatalf("%s: bytes = %d, want %d", name, res.Bytes, size)
			}
			if got, want := slices.Sorted(maps.Keys(sink.blocks)), slices.Sorted(maps.Keys(blocks)); !slices.Equal(got, want) {
				t.Fatalf("%s: sink got %d blocks, want %d", name, len(got), len(want))
			}
			for k, b := range blocks {
				if !bytes.Equal(sink.blocks[k], b) {
					t.Fatalf("%s: block %s differs from the CAR's", name, cid.MustParse([]byte(k)))
				}
			}
		}
	}
	// bad: the error wraps every one of wantErrs and names each of
	// mentions (CIDs, offsets, limits).
	bad := func(name string, wantErrs []error, mentions ...any) {
		t.Helper()
		data := read(name)
		for run := range 2 {
			_, err := car.Import(context.Background(), bytes.NewReader(data), pool, &memSink{})
			for _, want := range wantErrs {
				if !errors.Is(err, want) {
					t.Fatalf("%s (run %d): error = %v, want %v", name, run, err, want)
				}
			}
			for _, m := range mentions {
				if s := fmt.Sprint(m); !strings.Contains(err.Error(), s) {
					t.Fatalf("%s (run %d): error = %q, want it to name %s", name, run, err, s)
				}
			}
		}
	}
	errs := func(e ...error) []error { return e }
	hdrLen := len(headerBytes(1, []cid.Cid{d.fileRoot}))
	size := func(name string) int { return len(read(name)) }

	valid("valid-v1-unixfs.car", d.fileRoot)
	valid("valid-v2-unixfs.car", d.fileRoot)
	valid("valid-v2-unixfs-noindex.car", d.fileRoot)
	valid("valid-v1-dagcbor.car", d.cborRoot)
	valid("valid-v1-dagjson.car", d.jsonRoot)

	// Framing. A truncated CAR is malformed too, and names where it ends.
	truncated := errs(io.ErrUnexpectedEOF, car.ErrMalformed)
	bad("truncated-header.car", truncated, size("truncated-header.car"))
	bad("truncated-section.car", truncated, d.fileBlocks[1].cid, hdrLen+len(sectionBytes(d.fileBlocks[0].cid, d.fileBlocks[0].data)), size("truncated-section.car"))
	bad("varint-overflow.car", errs(car.ErrMalformed), hdrLen)
	bad("zero-length-section.car", errs(car.ErrMalformed), hdrLen)
	bad("short-section.car", errs(car.ErrMalformed), hdrLen)
	bad("header-too-large.car", errs(car.ErrHeaderTooLarge), car.DefaultMaxHeaderSize)
	bad("block-too-large.car", errs(car.ErrBlockTooLarge), d.fileBlocks[0].cid, car.DefaultMaxBlockSize)
	bad("version-3.car", errs(car.ErrUnsupportedVersion))

	// Verification.
	bad("hash-mismatch.car", errs(car.ErrHashMismatch), d.cborBlocks[2].cid)
	bad("identity-mismatch.car", errs(car.ErrHashMismatch))
	bad("unsupported-hash.car", errs(car.ErrUnsupportedHash, ingest.ErrCIDRefused))
	// kubo refuses identity CIDs over 128 bytes everywhere (issue 11):
	// as a section, a root of the header and a link of a reachable block.
	bad("identity-section-too-large.car", errs(car.ErrUnsupportedHash, ingest.ErrCIDRefused))
	bad("identity-root-too-large.car", errs(car.ErrUnsupportedHash, ingest.ErrCIDRefused))
	bad("identity-link-too-large.car", errs(car.ErrUnsupportedHash, ingest.ErrCIDRefused))

	// CARv2.
	bad("v2-index-truncated.car", truncated, size("v2-index-truncated.car"))
	bad("v2-index-unsorted.car", errs(car.ErrMalformed))
	bad("v2-index-unknown-codec.car", errs(car.ErrMalformed))
	bad("v2-bad-payload-offset.car", errs(car.ErrMalformed))
	bad("v2-payload-offset-past-eof.car", truncated, size("v2-payload-offset-past-eof.car"))
	bad("v2-payload-past-eof.car", truncated)
	bad("v2-trailing-data.car", errs(car.ErrMalformed))

	// Roots.
	bad("zero-roots.car", errs(car.ErrBadRoots))
	bad("two-roots.car", errs(car.ErrBadRoots))

	// Completeness.
	bad("root-absent.car", errs(car.ErrMissingBlock), d.fileRoot)
	bad("missing-intermediate.car", errs(car.ErrMissingBlock), d.fileRoot)
	bad("undecodable-link.car", errs(car.ErrUnsupportedCodec))
	bad("root-not-dagpb.car", errs(car.ErrMalformed))

	files, _ := filepath.Glob("testdata/*.car")
	for _, p := range files {
		if !tested[filepath.Base(p)] {
			t.Errorf("testdata/%s has no expected result in TestImportCorpus", filepath.Base(p))
		}
	}
}

// TestImportOptions checks the options that relax the checks: the REST
// layer's no-pin and pin-roots=all, and blocks already in the store.
func TestImportOptions(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	noPin := []car.Option{car.AllowRoots(0, -1), car.CheckComplete(false)}
	f := func(name string, wantErr error, wantBlocks int, opts ...car.Option) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			sink := &memSink{}
			res, err := car.Import(context.Background(), bytes.NewReader(data), pool, sink, opts...)
			if !errors.Is(err, wantErr) {
				t.Fatalf("%s (run %d): error = %v, want %v", name, run, err, wantErr)
			}
			if err == nil && (res.Blocks != wantBlocks || len(sink.order) != wantBlocks) {
				t.Fatalf("%s: %d blocks read, %d stored, want %d", name, res.Blocks, len(sink.order), wantBlocks)
			}
		}
	}
	f("zero-roots.car", nil, 14, noPin...)
	f("two-roots.car", nil, 17, noPin...)
	f("root-absent.car", nil, 13, noPin...)
	f("missing-intermediate.car", nil, 13, noPin...)
	f("undecodable-link.car", nil, 2, noPin...)
	// Framing and hashes are checked whatever the options.
	f("hash-mismatch.car", car.ErrHashMismatch, 0, noPin...)
	f("truncated-section.car", io.ErrUnexpectedEOF, 0, noPin...)

	f("two-roots.car", nil, 17, car.AllowRoots(1, -1))
	f("zero-roots.car", car.ErrBadRoots, 0, car.AllowRoots(1, -1))
	f("two-roots.car", car.ErrBadRoots, 0, car.AllowRoots(1, 1))
	f("zero-roots.car", nil, 14, car.AllowRoots(0, -1)) // complete: nothing to walk
	// CIDs kubo refuses are refused whatever the options; links only
	// matter when the DAG is checked for a pin.
	f("identity-section-too-large.car", car.ErrUnsupportedHash, 0, noPin...)
	f("identity-root-too-large.car", car.ErrUnsupportedHash, 0, noPin...)
	f("identity-link-too-large.car", nil, 1, noPin...)
	f("valid-v1-unixfs.car", car.ErrBlockTooLarge, 0, car.MaxBlockSize(1000))
	f("valid-v1-unixfs.car", car.ErrHeaderTooLarge, 0, car.MaxHeaderSize(10))

	// A block missing from the CAR but in the store completes the DAG; its
	// own links are not followed.
	inStore := func(want string) car.Option {
		return car.Has(func(_ context.Context, c cid.Cid) (bool, error) { return c.String() == want, nil })
	}
	d := newTestDAGs()
	f("root-absent.car", nil, 13, inStore(d.fileRoot.String()))
	// The intermediate node the generator leaves out: the first block
	// with links.
	var inner cid.Cid
	for _, b := range d.fileBlocks {
		if pn, err := dag.DecodeProtobuf(b.data); err == nil && len(pn.Links()) > 0 {
			inner = b.cid
			break
		}
	}
	f("missing-intermediate.car", nil, 13, inStore(inner.String()))
	f("missing-intermediate.car", car.ErrMissingBlock, 0, inStore("Qmother"))
	storeDown := errors.New("store down")
	f("root-absent.car", storeDown, 0, car.Has(func(context.Context, cid.Cid) (bool, error) { return false, storeDown }))
}

// TestImportRootSize checks IPFS Cluster's "size": the UnixFS file size of
// the root, only when the root block is in the CAR and is dag-pb.
func TestImportRootSize(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	f := func(name string, want uint64, opts ...car.Option) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		res, err := car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{}, opts...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.RootSize != want {
			t.Fatalf("%s: root size = %d, want %d", name, res.RootSize, want)
		}
	}
	f("valid-v1-unixfs.car", 10<<10)
	f("valid-v2-unixfs.car", 10<<10)
	f("valid-v1-unixfs.car", 10<<10, car.CheckComplete(false))
	f("valid-v1-dagcbor.car", 0)
	f("root-absent.car", 0, car.CheckComplete(false))
}

// TestImportUnreachableUndecodable checks that a block whose codec we cannot
// decode only matters when the roots reach it.
func TestImportUnreachableUndecodable(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	d := newTestDAGs()
	gitData := []byte("blob 6\x00hello\n")
	git := carBlock{cid.MustParse("baf4bcfgoae3ckaylvdn2sbxxk2lh7hu4uokemsq"), gitData}
	data := carV1([]cid.Cid{d.cborRoot}, append(slices.Clone(d.cborBlocks), git))
	sink := &memSink{}
	res, err := car.Import(context.Background(), bytes.NewReader(data), pool, sink)
	if err != nil {
		t.Fatal(err)
	}
	if res.Blocks != 4 || len(sink.order) != 4 {
		t.Fatalf("%d blocks read, %d stored, want 4", res.Blocks, len(sink.order))
	}
}

// TestImportOrder checks that the sink sees the blocks in file order, and a
// failing sink stops the import with the sink's error.
func TestImportOrder(t *testing.T) {
	pool := ingest.NewHashPool(4)
	defer pool.Stop()
	d := newTestDAGs()
	data := carV1([]cid.Cid{d.fileRoot}, d.fileBlocks)
	sink := &memSink{}
	if _, err := car.Import(context.Background(), bytes.NewReader(data), pool, sink); err != nil {
		t.Fatal(err)
	}
	for i, b := range d.fileBlocks {
		if !sink.order[i].Equals(b.cid) {
			t.Fatalf("block %d stored is %s, want %s", i, sink.order[i], b.cid)
		}
	}
	full := errors.New("sink full")
	_, err := car.Import(context.Background(), bytes.NewReader(data), pool, failingSink{full})
	if !errors.Is(err, full) || !strings.Contains(err.Error(), d.fileBlocks[0].cid.String()) {
		t.Fatalf("error = %v, want the sink's error for the first block", err)
	}
}

type failingSink struct{ err error }

func (s failingSink) Put(context.Context, cid.Cid, []byte) error { return s.err }

// slowReader serves data one byte per Read, as a slow but live client
// would, and calls cancel in the Read that reaches cancelAt. It counts the
// Reads made after that one: an import that observes its context makes
// none (each Read checks it first), one that does not reads on to the end.
type slowReader struct {
	data      []byte
	off       int
	cancelAt  int
	cancel    context.CancelFunc
	canceled  bool
	readsLate int // Reads after the one that canceled
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.canceled {
		r.readsLate++
	}
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	if r.off < r.cancelAt {
		n := copy(p, r.data[r.off:r.cancelAt])
		r.off += n
		return n, nil
	}
	if !r.canceled {
		r.cancel()
		r.canceled = true
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[r.off]
	r.off++
	return 1, nil
}

// TestImportCanceled checks that a context canceled while a slow client is
// still sending ends the import with the context's error at the next Read,
// and that nothing is returned to pin. The reader stays alive and would
// deliver the whole valid CAR: an import that ignored its context would
// succeed, or read on to the end.
func TestImportCanceled(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	d := newTestDAGs()
	data := carV1([]cid.Cid{d.fileRoot}, d.fileBlocks)
	for _, at := range []int{10, len(data) / 2, len(data) - 10} {
		ctx, cancel := context.WithCancel(context.Background())
		r := &slowReader{data: data, cancelAt: at, cancel: cancel}
		res, err := car.Import(ctx, r, pool, &memSink{})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled at byte %d of %d: error = %v, want context.Canceled", at, len(data), err)
		}
		if res != nil {
			t.Errorf("canceled at byte %d of %d: Import returned roots %v", at, len(data), res.Roots)
		}
		if r.readsLate > 0 {
			t.Errorf("canceled at byte %d of %d: %d Reads after the cancel, want 0", at, len(data), r.readsLate)
		}
	}
}

// TestImportErrorsWrapSentinel checks that every corpus failure is
// classifiable.
func TestImportErrorsWrapSentinel(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	files, _ := filepath.Glob("testdata/*.car")
	for _, p := range files {
		data, _ := os.ReadFile(p)
		_, err := car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{})
		if err != nil && !wrapsSentinel(err) {
			t.Errorf("%s: %v wraps no sentinel", p, err)
		}
	}
}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
