package localstore

import (
	"bufio"
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// testBlock returns deterministic pseudo-random data for seed and its CIDv1
// (raw, sha2-256).
func testBlock(t testing.TB, seed uint64, size int) (cid.Cid, []byte) {
	t.Helper()
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	copy(key[2:], strconv.FormatUint(seed, 10))
	data := make([]byte, size)
	rand.NewChaCha8(key).Read(data)
	return testCid(t, data), data
}

func testCid(t testing.TB, data []byte) cid.Cid {
	t.Helper()
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// checkBlock asserts that c is stored with exactly want and that the stored
// bytes hash to c.
func checkBlock(t *testing.T, s *Store, c cid.Cid, want []byte) {
	t.Helper()
	ctx := context.Background()
	has, err := s.Has(ctx, c)
	if err != nil || !has {
		t.Fatalf("Has(%s) = %v, %v; want true, nil", c, has, err)
	}
	got, err := s.Get(ctx, c)
	if err != nil {
		t.Fatalf("Get(%s): %v", c, err)
	}
	if string(got) != string(want) {
		t.Fatalf("Get(%s): got %d bytes, want %d bytes (content differs)", c, len(got), len(want))
	}
	if sum := testCid(t, got); !sum.Equals(c) {
		t.Fatalf("Get(%s): data hashes to %s", c, sum)
	}
}

func TestPutHasGet(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())

	f := func(name string, size int) {
		t.Helper()
		c, data := testBlock(t, uint64(size), size)
		want := append([]byte(nil), data...)
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatalf("%s: Put: %v", name, err)
		}
		checkBlock(t, s, c, want)
		// A second Put of the same block is a no-op, not an error.
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatalf("%s: second Put: %v", name, err)
		}
		checkBlock(t, s, c, want)
	}
	f("empty", 0)
	f("small", 100)
	f("256KiB", 256<<10)
	f("1MiB", 1<<20)
	f("2MiB", 2<<20)
}

func TestGetAbsent(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	c, _ := testBlock(t, 1, 10)

	has, err := s.Has(ctx, c)
	if err != nil || has {
		t.Fatalf("Has = %v, %v; want false, nil", has, err)
	}
	_, err = s.Get(ctx, c)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v; want ErrNotFound", err)
	}
	if !ipld.IsNotFound(err) {
		t.Fatalf("Get: %v; want ipld.IsNotFound", err)
	}
	if want := "cannot get block " + c.String() + ": localstore: block not found"; err.Error() != want {
		t.Fatalf("Get: error %q; want %q", err, want)
	}
}

// TestMultihashKeying checks boxo's keying: blocks are stored by multihash,
// so a CIDv0 and a CIDv1 (any codec) with the same hash are the same block,
// and the key is /blocks/<base32 multihash>.
func TestMultihashKeying(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	data := []byte("hello multihash keying")
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	v0 := cid.NewCidV0(h)
	v1 := cid.NewCidV1(cid.Raw, h)
	if err := s.Put(ctx, v0, data); err != nil {
		t.Fatal(err)
	}
	checkBlock(t, s, v1, data)

	// boxo's dshelp.MultihashToDsKey: unpadded upper-case base32 of the
	// multihash bytes.
	wantKey := "/blocks/" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h)
	res, err := s.ds.Query(ctx, query.Query{Prefix: "/blocks", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Key != wantKey {
		t.Fatalf("keys under /blocks: %v; want [%s]", entries, wantKey)
	}
}

func TestIdentityCid(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	data := []byte("inline")
	h, err := mh.Sum(data, mh.IDENTITY, -1)
	if err != nil {
		t.Fatal(err)
	}
	c := cid.NewCidV1(cid.Raw, h)
	if err := s.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	has, err := s.Has(ctx, c)
	if err != nil || !has {
		t.Fatalf("Has = %v, %v; want true, nil", has, err)
	}
	got, err := s.Get(ctx, c)
	if err != nil || string(got) != string(data) {
		t.Fatalf("Get = %q, %v; want %q", got, err, data)
	}
	// Nothing was written.
	if has, err := s.ds.Has(ctx, blockKey(c)); err != nil || has {
		t.Fatalf("identity block stored in pebble: %v, %v", has, err)
	}
}

func TestDatastoreNamespace(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	c, data := testBlock(t, 1, 100)
	if err := s.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	ds := s.Datastore()
	if err := ds.Put(ctx, datastore.NewKey("/pins/x"), []byte("pin")); err != nil {
		t.Fatal(err)
	}
	if err := ds.Sync(ctx, datastore.NewKey("/pins")); err != nil {
		t.Fatal(err)
	}
	// The block is not visible through the metadata datastore, not even at
	// the key it has in the root.
	if has, err := ds.Has(ctx, blockKey(c)); err != nil || has {
		t.Fatalf("metadata datastore sees the block key: %v, %v", has, err)
	}
	res, err := ds.Query(ctx, query.Query{})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Key != "/pins/x" || string(entries[0].Value) != "pin" {
		t.Fatalf("metadata datastore holds %v; want only /pins/x", entries)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[cid.Cid][]byte{}
	for i := range 50 {
		c, data := testBlock(t, uint64(i), 64<<10)
		want[c] = data
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Datastore().Put(ctx, datastore.NewKey("/k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	// No Sync: a clean Close must keep everything.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Put(ctx, cid.Undef, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v; want ErrClosed", err)
	}
	if err := s.Sync(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v; want ErrClosed", err)
	}

	s = openTest(t, dir)
	for c, data := range want {
		checkBlock(t, s, c, data)
	}
	if v, err := s.Datastore().Get(ctx, datastore.NewKey("/k")); err != nil || string(v) != "v" {
		t.Fatalf("metadata after reopen: %q, %v", v, err)
	}
}

func TestConcurrentPut(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	const workers, perWorker = 4, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				c, data := testBlock(t, uint64(w*perWorker+i), 32<<10)
				if err := s.Put(ctx, c, data); err != nil {
					t.Error(err)
					return
				}
				// Every worker also writes a block the others write.
				c, data = testBlock(t, 1_000_000+uint64(i), 1000)
				if err := s.Put(ctx, c, data); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range workers * perWorker {
		c, data := testBlock(t, uint64(i), 32<<10)
		checkBlock(t, s, c, data)
	}
}

func TestPutCanceled(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, data := testBlock(t, 1, 10)
	if err := s.Put(ctx, c, data); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with canceled context: %v; want context.Canceled", err)
	}
}

// Kill -9 test. The parent re-executes the test binary running
// TestKillHelper, which puts killSynced blocks (more than one memtable, so a
// flush and blob files are involved), syncs, prints "synced", then keeps
// putting unsynced blocks until it is killed.
const (
	killEnvDir   = "LOCALSTORE_KILL_TEST_DIR"
	killSynced   = 400 // × 256 KiB = 100 MiB, more than one 64 MiB memtable
	killUnsynced = 100_000
	killSize     = 256 << 10
	killMetaKey  = "/pins/kill-test"
)

func TestKillHelper(t *testing.T) {
	dir := os.Getenv(killEnvDir)
	if dir == "" {
		t.Skip("helper process for TestKill9")
	}
	ctx := context.Background()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.log.direct == nil {
		t.Fatal("the block log does not write with O_DIRECT")
	}
	for i := range killSynced {
		c, data := testBlock(t, uint64(i), killSize)
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Datastore().Put(ctx, datastore.NewKey(killMetaKey), []byte("synced")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("synced")
	for i := killSynced; i < killSynced+killUnsynced; i++ {
		c, data := testBlock(t, uint64(i), killSize)
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		if i == killSynced+20 {
			fmt.Println("writing")
		}
	}
	select {} // wait for SIGKILL
}

func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100 MiB in a child process")
	}
	dir := directDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnvDir+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Wait for "synced", then for the child to be busy with unsynced Puts,
	// so the kill lands in the middle of WAL writes.
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(2 * time.Minute)
	for _, want := range []string{"synced", "writing"} {
		for got := ""; got != want; {
			select {
			case line, ok := <-lines:
				if !ok {
					_ = cmd.Wait()
					t.Fatalf("helper exited before printing %q; stderr:\n%s", want, stderr.String())
				}
				got = line
			case <-timeout:
				t.Fatalf("helper did not print %q in time; stderr:\n%s", want, stderr.String())
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v; stderr:\n%s", err, stderr.String())
	}
	for range lines { // drain
	}

	s := openTest(t, dir)
	for i := range killSynced {
		c, data := testBlock(t, uint64(i), killSize)
		checkBlock(t, s, c, data)
	}
	if v, err := s.Datastore().Get(context.Background(), datastore.NewKey(killMetaKey)); err != nil || string(v) != "synced" {
		t.Fatalf("synced metadata after kill: %q, %v", v, err)
	}
	// Unsynced blocks may or may not be there, but any that is must be
	// intact: WAL replay keeps whole batches only.
	extra := 0
	for i := killSynced; i < killSynced+killUnsynced; i++ {
		c, data := testBlock(t, uint64(i), killSize)
		has, err := s.Has(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if !has {
			break
		}
		checkBlock(t, s, c, data)
		extra++
	}
	t.Logf("%d synced blocks intact, %d unsynced blocks survived the kill", killSynced, extra)
}

// TestMachineCrash simulates power loss, which kill -9 cannot: pebble runs
// on a crashable in-memory filesystem, and the clone taken at "the crash"
// holds only what was fsynced. Blocks put before Sync must be in it.
//
// The control case (NoSync: Sync does not fsync) shows that the simulation
// drops unsynced data: the last block put is in the active WAL, which
// nothing else syncs (WAL rotation syncs only the WAL it closes).
func TestMachineCrash(t *testing.T) {
	const synced = 20
	f := func(name string, opts Options, tail int) {
		t.Helper()
		ctx := context.Background()
		fs := vfs.NewCrashableMem()
		popts := pebbleOptions()
		popts.FS = fs
		// No background WAL syncing: only Sync may make blocks durable.
		popts.WALBytesPerSync = 0
		s, err := open("/db", opts, popts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range synced + tail {
			if i == synced {
				if err := s.Sync(ctx); err != nil {
					t.Fatalf("%s: Sync: %v", name, err)
				}
			}
			c, data := testBlock(t, uint64(i), 256<<10)
			if err := s.Put(ctx, c, data); err != nil {
				t.Fatalf("%s: Put: %v", name, err)
			}
		}
		if tail == 0 {
			if err := s.Sync(ctx); err != nil {
				t.Fatalf("%s: Sync: %v", name, err)
			}
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{})
		_ = s.Close()

		popts = pebbleOptions()
		popts.FS = crashed
		s, err = open("/db", Options{}, popts)
		if err != nil {
			t.Fatalf("%s: open after crash: %v", name, err)
		}
		defer s.Close()
		missing := []int{}
		for i := range synced {
			c, data := testBlock(t, uint64(i), 256<<10)
			has, err := s.Has(ctx, c)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !has {
				missing = append(missing, i)
				continue
			}
			checkBlock(t, s, c, data)
		}
		switch {
		case !opts.NoSync && len(missing) > 0:
			t.Fatalf("%s: synced blocks %v lost in the crash", name, missing)
		case opts.NoSync && !slices.Contains(missing, synced-1):
			t.Fatalf("%s: the last block survived without fsync: the simulation proves nothing", name)
		}
	}
	f("sync, then unsynced puts", Options{}, 10)
	f("sync last", Options{}, 0)
	f("control: NoSync", Options{NoSync: true}, 0)
}

// TestPutDoesNotRetainData: Put must copy (Store is an ingest.CopyingSink,
// so importers overwrite the slice right after Put returns).
func TestPutDoesNotRetainData(t *testing.T) {
	s := openTest(t, t.TempDir())
	var _ ingest.CopyingSink = s
	c, data := testBlock(t, 99, 256<<10)
	buf := append([]byte(nil), data...)
	if err := s.Put(t.Context(), c, buf); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0xff
	}
	checkBlock(t, s, c, data)
}

// TestUnsyncedForgotten: after a machine crash, blocks put after the last
// Sync are absent (their index entries may have survived, their data may
// not have), and blocks put after the restart never read as them.
func TestUnsyncedForgotten(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	popts := pebbleOptions()
	popts.FS = fs
	s, err := open("/db", Options{}, popts)
	if err != nil {
		t.Fatal(err)
	}
	cA, dA := testBlock(t, 1, 256<<10)
	cB, _ := testBlock(t, 2, 256<<10)
	s.Put(ctx, cA, dA)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.Put(ctx, cB, make([]byte, 256<<10))
	// Make B's index entry durable but not its data: the worst case.
	if err := s.ds.Sync(ctx, datastore.NewKey("/")); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = s.Close()
	popts = pebbleOptions()
	popts.FS = crashed
	s, err = open("/db", Options{}, popts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkBlock(t, s, cA, dA)
	if has, _ := s.Has(ctx, cB); has {
		t.Fatal("a block put after the last Sync survived the crash as present")
	}
	for i := uint64(10); i < 14; i++ {
		c, d := testBlock(t, i, 256<<10)
		if err := s.Put(ctx, c, d); err != nil {
			t.Fatal(err)
		}
		checkBlock(t, s, c, d)
	}
	if has, _ := s.Has(ctx, cB); has {
		t.Fatal("a forgotten block's index entry points at new data")
	}
}

// TestBlocksReadBackAtEveryStage: blocks of assorted sizes read back right
// after Put (from the log's write buffers, direct.go), after Syncs that
// end in the middle of a page (padded, then rewritten), across buffer and
// segment boundaries, and after a reopen.
func TestBlocksReadBackAtEveryStage(t *testing.T) {
	defer func(old uint64) { maxSegmentSize = old }(maxSegmentSize)
	maxSegmentSize = 9 << 20 // several segments, several buffers each
	ctx := context.Background()
	dir := directDir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.log.direct == nil {
		t.Fatal("the block log does not write with O_DIRECT")
	}
	rnd := rand.New(rand.NewPCG(1, 1))
	type blk struct {
		c    cid.Cid
		data []byte
	}
	var all []blk
	for i := range 400 {
		c, data := testBlock(t, uint64(i), 1+rnd.IntN(300<<10))
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		all = append(all, blk{c, data})
		checkBlock(t, s, c, data)
		old := all[rnd.IntN(len(all))]
		checkBlock(t, s, old.c, old.data)
		if rnd.IntN(10) == 0 {
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		checkBlock(t, s, b.c, b.data)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir + "/blocks")
	if len(entries) < 5 {
		t.Fatalf("%d segment files; the test means to cross segments", len(entries))
	}
	s = openTest(t, dir)
	for _, b := range all {
		checkBlock(t, s, b.c, b.data)
	}
}

// TestWriteFailure: when a write of the block log fails (a full or broken
// disk), the Sync that covers it fails, blocks in the lost range read as
// errors, not as zeros, and are not reported present; blocks synced before
// are intact; Close releases everything so that the store reopens in the
// same process, without the lost blocks.
func TestWriteFailure(t *testing.T) {
	ctx := context.Background()
	dir := directDir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.log.direct == nil {
		t.Fatal("the block log does not write with O_DIRECT")
	}
	before, beforeData := testBlock(t, 1, 100<<10)
	if err := s.Put(ctx, before, beforeData); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.log.direct.writeAt = func(*os.File, []byte, int64) (int, error) { return 0, syscall.ENOSPC }
	var lost []cid.Cid
	for i := range 12 { // 3 MiB: stays in the write buffer until Sync
		c, data := testBlock(t, uint64(100+i), 256<<10)
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		lost = append(lost, c)
	}
	if err := s.Sync(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync after a failed write: %v; want ENOSPC", err)
	}
	for _, c := range lost {
		if _, err := s.Get(ctx, c); err == nil {
			t.Fatalf("Get(%s) of a block whose write failed returned data", c)
		}
		if has, _ := s.Has(ctx, c); has {
			t.Fatalf("Has(%s) = true for a block whose write failed", c)
		}
	}
	checkBlock(t, s, before, beforeData)
	c, data := testBlock(t, 999, 1000)
	if err := s.Put(ctx, c, data); !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put after a failed write: %v; want ErrReadOnly and ENOSPC", err)
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close after a failed write reported no error")
	}
	s = openTest(t, dir)
	checkBlock(t, s, before, beforeData)
	for _, c := range lost {
		if has, _ := s.Has(ctx, c); has {
			t.Fatalf("after reopening, Has(%s) = true for a block whose write failed", c)
		}
	}
}
