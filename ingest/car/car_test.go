package car_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
// shared HashPool) shows.
func TestImportCorpus(t *testing.T) {
	pool := ingest.NewHashPool(4)
	defer pool.Stop()
	tested := map[string]bool{}

	f := func(name string, wantErr error, wantMsg string) {
		t.Helper()
		tested[name] = true
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			sink := &memSink{}
			res, err := car.Import(context.Background(), bytes.NewReader(data), pool, sink)
			if wantErr != nil {
				if !errors.Is(err, wantErr) {
					t.Fatalf("%s (run %d): error = %v, want %v", name, run, err, wantErr)
				}
				if !strings.Contains(err.Error(), wantMsg) {
					t.Fatalf("%s (run %d): error = %q, want it to contain %q", name, run, err, wantMsg)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s (run %d): %v", name, run, err)
			}
			roots, blocks, size := goCarBlocks(t, data)
			if !slices.Equal(res.Roots, roots) {
				t.Fatalf("%s: roots = %v, want %v", name, res.Roots, roots)
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
			if wantMsg != "" && res.Roots[0].String() != wantMsg {
				t.Fatalf("%s: root = %s, want %s", name, res.Roots[0], wantMsg)
			}
		}
	}

	// Valid; wantMsg is the root.
	f("valid-v1-unixfs.car", nil, "QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm")
	f("valid-v2-unixfs.car", nil, "QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm")
	f("valid-v2-unixfs-noindex.car", nil, "QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm")
	f("valid-v1-dagcbor.car", nil, "bafyreifcenipvht2cxbpe52iy5dxysr6mryukh26cmlck3rrca3jbehnru")
	f("valid-v1-dagjson.car", nil, "baguqeerajwrvinwt2wzp6e4fbqtbfppvcx635pgsrmyh3cors4zj7y7arpya")

	// Framing.
	f("truncated-header.car", io.ErrUnexpectedEOF, "cannot read CAR header: the stream ends at offset 28")
	f("truncated-section.car", io.ErrUnexpectedEOF, "cannot read block QmXunY39mU1JPLD3LjGjKGrWRHmvQVx8N4uVQGqPD4reFt (section 2 at offset 1128, 1035 bytes): the stream ends at offset 1228")
	f("varint-overflow.car", car.ErrMalformed, "cannot read length of section 1 at offset 57: varint longer than 9 bytes")
	f("zero-length-section.car", car.ErrMalformed, "cannot read section 1 at offset 57: its length is 0")
	f("short-section.car", car.ErrMalformed, "cannot read CID of section 1 at offset 57")
	f("header-too-large.car", car.ErrHeaderTooLarge, "header is 40000 bytes, over the limit of 32768")
	f("block-too-large.car", car.ErrBlockTooLarge, "cannot read block QmesAmxusagynutFoUxJEvFea8H2GNSFbKZCqFpv2HZEqe (section 1 at offset 57): block is 2097153 bytes, over the limit of 2097152")
	f("version-3.car", car.ErrUnsupportedVersion, "CAR version 3 is not supported (only 1 and 2)")

	// Verification.
	f("hash-mismatch.car", car.ErrHashMismatch, "cannot verify block bafkreidpe3ihpdatox5jp5vlvu2ts2cbm45g6mynqyksnzzmmy5zsl7vca (section 3 at offset 253): data hashes to bafkreidb7v2kisflewjkyqwegffuptongjr4kvfapmwgpoxs3ephkqu5hy")
	f("identity-mismatch.car", car.ErrHashMismatch, "cannot verify block bafkqablimvwgy3y (section 1 at offset 31)")
	f("unsupported-hash.car", car.ErrUnsupportedHash, "hash md5 (0xd5) with a 16-byte digest is refused by kubo")

	// CARv2.
	f("v2-index-truncated.car", io.ErrUnexpectedEOF, "cannot read CARv2 index at offset 11588: the stream ends at offset 12173")
	f("v2-index-unsorted.car", car.ErrMalformed, "cannot read CARv2 index at offset 11588: record at offset 11658 is out of order")
	f("v2-index-unknown-codec.car", car.ErrMalformed, "unknown index codec 0x501")
	f("v2-bad-payload-offset.car", car.ErrMalformed, "data payload offset 20 points inside the header, which ends at offset 51")
	f("v2-payload-offset-past-eof.car", io.ErrUnexpectedEOF, "it starts at offset 1048576, past the end of the stream at offset 12178")
	f("v2-payload-past-eof.car", io.ErrUnexpectedEOF, "the stream ends at offset 11588, before the end of the CARv2 data payload at offset 12588")
	f("v2-trailing-data.car", car.ErrMalformed, "unexpected data at offset 11588, after the CARv2 data payload (the header declares no index)")

	// Roots.
	f("zero-roots.car", car.ErrBadRoots, "CAR has no roots")
	f("two-roots.car", car.ErrBadRoots, "CAR has 2 roots; only single-root CARs are pinned (use no-pin=true for partial CARs, or pin-roots=all)")

	// Completeness.
	f("root-absent.car", car.ErrMissingBlock, "root QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm is neither in the CAR nor in the store")
	f("missing-intermediate.car", car.ErrMissingBlock, "block QmX1oTFDsWZLsKj8BULDhpfnuTmXmw257up2jGBCB8wwFz (linked from QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm) is neither in the CAR nor in the store")
	f("undecodable-link.car", car.ErrUnsupportedCodec, "block baf4bcfgoae3ckaylvdn2sbxxk2lh7hu4uokemsq (linked from QmeZqnvXk9bxHyvbmg8UBUbwMufZwvTa1ZCHq51TKQPqEg) has codec git-raw (0x78), which ingestd cannot decode; use no-pin=true")
	f("root-not-dagpb.car", car.ErrMalformed, "root bafybeic247tkiiye3rxec5rbbob4imbe7gnaxtu2q4gdw3jmsx6i5p5xjq does not decode as dag-pb (0x70)")

	// Truncations must also say that the CAR is malformed.
	for _, name := range []string{"truncated-header.car", "truncated-section.car", "v2-index-truncated.car", "v2-payload-past-eof.car"} {
		data, _ := os.ReadFile(filepath.Join("testdata", name))
		if _, err := car.Import(context.Background(), bytes.NewReader(data), pool, &memSink{}); !errors.Is(err, car.ErrMalformed) {
			t.Errorf("%s: error = %v, want it to wrap ErrMalformed too", name, err)
		}
	}
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
	f("valid-v1-unixfs.car", car.ErrBlockTooLarge, 0, car.MaxBlockSize(1000))
	f("valid-v1-unixfs.car", car.ErrHeaderTooLarge, 0, car.MaxHeaderSize(10))

	// A block missing from the CAR but in the store completes the DAG; its
	// own links are not followed.
	inStore := func(want string) car.Option {
		return car.Has(func(_ context.Context, c cid.Cid) (bool, error) { return c.String() == want, nil })
	}
	f("root-absent.car", nil, 13, inStore("QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm"))
	f("missing-intermediate.car", nil, 13, inStore("QmX1oTFDsWZLsKj8BULDhpfnuTmXmw257up2jGBCB8wwFz"))
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
	if !errors.Is(err, full) || !strings.Contains(err.Error(), "cannot store block "+d.fileBlocks[0].cid.String()) {
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
