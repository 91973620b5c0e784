package localstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ingestd/ingestd/ingest/car"
)

// requireDirect reports whether a test of the O_DIRECT path must fail,
// rather than skip, where no directory accepts O_DIRECT: in CI (CI=true, or
// INGESTD_REQUIRE_KUBO set, as `make test` does), so that these tests
// cannot silently stop running.
func requireDirect() bool {
	if os.Getenv("CI") == "true" {
		return true
	}
	v := os.Getenv("INGESTD_REQUIRE_KUBO")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// directDir returns an empty directory, removed after the test, on a file
// system that accepts O_DIRECT: t.TempDir() (os.TempDir, usually the disk;
// tmpfs refuses O_DIRECT), else <module root>/.cache/tmp (gitignored, on
// the disk holding the checkout). Without one the test is skipped, or
// failed in CI (requireDirect).
func directDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if supportsDirect(dir) {
		return dir
	}
	tried := []string{dir}
	if root, err := moduleRoot(); err == nil {
		base := filepath.Join(root, ".cache", "tmp")
		if err := os.MkdirAll(base, 0o755); err == nil {
			if d, err := os.MkdirTemp(base, "localstore-"); err == nil {
				t.Cleanup(func() { os.RemoveAll(d) })
				if supportsDirect(d) {
					return d
				}
				tried = append(tried, d)
			}
		}
	}
	msg := fmt.Sprintf("no directory accepts O_DIRECT (tried %s)", strings.Join(tried, ", "))
	if requireDirect() {
		t.Fatalf("%s; CI=true or INGESTD_REQUIRE_KUBO is set, so this is a failure: set TMPDIR to a directory on a disk", msg)
	}
	t.Skipf("%s; set TMPDIR to a directory on a disk", msg)
	return ""
}

func supportsDirect(dir string) bool {
	path := filepath.Join(dir, "direct-probe")
	defer os.Remove(path)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return false
	}
	f, ok, err := openDirect(path)
	if err != nil || !ok {
		return false
	}
	defer f.Close()
	_, err = f.WriteAt(alignedBuf(directAlign), 0)
	return err == nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// staleEntries counts index entries that point outside the log.
func staleEntries(t *testing.T, s *Store) int {
	t.Helper()
	prefix := []byte(blocksPrefix.String() + "/")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		at, ok := parseLoc(it.Value())
		if !ok || !s.log.valid(at) {
			n++
		}
	}
	return n
}

// Power-loss test of the O_DIRECT path. A child process (TestCrashHelper)
// puts blocks of assorted sizes with O_DIRECT, Syncs now and then and
// prints what each Sync acknowledged, then puts more blocks without Sync
// (across write buffers and a segment) and SIGKILLs itself. It records,
// just before each fsync of a segment (fsyncHook), the segment's size: the
// parent then simulates the power loss by cutting every segment back to
// what was on disk at its last fsync (never-fsynced segments to nothing),
// or damages the log in other ways, and reopens it.
const (
	crashEnvDir     = "LOCALSTORE_CRASH_DIR"
	crashEnvFsyncs  = "LOCALSTORE_CRASH_FSYNCS"
	crashEnvNoSync  = "LOCALSTORE_CRASH_NOSYNC"
	crashEnvAtSync  = "LOCALSTORE_CRASH_AT_SYNC" // kill right after the last Sync
	crashSegment    = 6 << 20
	crashRounds     = 6
	crashUnsynced   = 60
	crashMaxBlock   = 300 << 10
	crashFsyncsFile = "fsyncs.txt"
)

// crashPut is a block the helper put: testBlock(seed, size) at loc.
type crashPut struct {
	seed uint64
	size int
	at   loc
}

func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("helper process for TestDirectPowerLoss")
	}
	maxSegmentSize = crashSegment
	rec, err := os.OpenFile(os.Getenv(crashEnvFsyncs), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fsyncHook = func(f vfs.File) {
		st, err := f.Stat()
		if err != nil {
			panic(err)
		}
		// A plain write: the page cache survives the SIGKILL.
		fmt.Fprintf(rec, "%s %d\n", st.Name(), st.Size())
	}
	s, err := Open(dir, Options{NoSync: os.Getenv(crashEnvNoSync) != ""})
	if err != nil {
		t.Fatal(err)
	}
	if s.log.direct == nil {
		t.Fatal("no O_DIRECT in the helper")
	}
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(7, 7))
	seed := uint64(0)
	put := func() {
		c, data := testBlock(t, seed, 1+rnd.IntN(crashMaxBlock))
		if err := s.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		at := where(t, s, c)
		fmt.Printf("put %d %d %d %d %d\n", seed, len(data), at.seg, at.off, at.n)
		seed++
	}
	for range crashRounds {
		for range 8 + rnd.IntN(8) {
			put()
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("acked %d\n", seed)
	}
	if os.Getenv(crashEnvAtSync) == "" {
		for range crashUnsynced {
			put()
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// runCrashHelper runs TestCrashHelper on dir until it kills itself and
// returns the blocks it put and how many of them were acknowledged.
func runCrashHelper(t *testing.T, dir string, noSync, atSync bool) (puts []crashPut, acked int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvFsyncs+"="+filepath.Join(dir, crashFsyncsFile))
	if noSync {
		cmd.Env = append(cmd.Env, crashEnvNoSync+"=1")
	}
	unsynced := crashUnsynced
	if atSync {
		cmd.Env = append(cmd.Env, crashEnvAtSync+"=1")
		unsynced = 0
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v; stdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		var p crashPut
		if n, _ := fmt.Sscanf(sc.Text(), "put %d %d %d %d %d", &p.seed, &p.size, &p.at.seg, &p.at.off, &p.at.n); n == 5 {
			puts = append(puts, p)
		} else if n, _ := fmt.Sscanf(sc.Text(), "acked %d", &acked); n != 1 {
			continue
		}
	}
	if acked == 0 || len(puts) != acked+unsynced {
		t.Fatalf("helper output: %d puts, %d acked; stdout:\n%s", len(puts), acked, stdout.String())
	}
	return puts, acked
}

// loseUnsynced cuts every segment back to its size at its last fsync.
func loseUnsynced(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, crashFsyncsFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	synced := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var name string
		var size int64
		if n, _ := fmt.Sscanf(line, "%s %d", &name, &size); n == 2 {
			synced[name] = size // sizes only grow: the last is the largest
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, "blocks", e.Name())
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if size := synced[e.Name()]; st.Size() > size {
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func segmentSize(t *testing.T, dir string, seg uint32) uint64 {
	t.Helper()
	st, err := os.Stat(segmentName(filepath.Join(dir, "blocks"), seg))
	if err != nil {
		t.Fatal(err)
	}
	return uint64(st.Size())
}

// TestDirectPowerLoss: after a simulated power loss, or a torn or damaged
// segment, the store opens; every acknowledged block reads back intact,
// except one whose own bytes were damaged, which is reported missing or
// corrupt and never served; an unacknowledged block is absent or intact,
// never torn; no index entry is left pointing outside the log; and the
// store takes and keeps new blocks. The control case (NoSync: Sync does not
// fsync) must lose acknowledged blocks, which shows that the simulation
// drops unsynced data.
func TestDirectPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes writing about 20 MiB each")
	}
	// damage returns the acknowledged blocks (indexes into puts) it made
	// absent and those it corrupted.
	type damage func(t *testing.T, dir string, puts []crashPut, acked int) (gone, corrupt []int)
	f := func(name string, noSync bool, damage damage) {
		t.Helper()
		ctx := context.Background()
		dir := directDir(t)
		puts, acked := runCrashHelper(t, dir, noSync, strings.Contains(name, "right after"))
		gone, corrupt := damage(t, dir, puts, acked)

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("%s: reopening: %v", name, err)
		}
		defer s.Close()
		if s.log.direct == nil {
			t.Fatalf("%s: no O_DIRECT after reopening", name)
		}
		var lostAcked []int
		survived := 0
		for i, p := range puts {
			c, data := testBlock(t, p.seed, p.size)
			got, err := s.Get(ctx, c)
			switch {
			case err == nil && string(got) != string(data):
				t.Fatalf("%s: block %d (%s) served with other bytes", name, i, c)
			case err == nil && i >= acked:
				survived++
			case err == nil && (contains(gone, i) || contains(corrupt, i)):
				t.Fatalf("%s: damaged block %d (%s) served", name, i, c)
			case err == nil:
			case errors.Is(err, ErrCorrupt) && contains(corrupt, i):
			case errors.Is(err, ErrNotFound) && i < acked:
				lostAcked = append(lostAcked, i)
			case errors.Is(err, ErrNotFound):
			default:
				t.Fatalf("%s: Get of block %d (%s, acked %v): %v", name, i, c, i < acked, err)
			}
		}
		if noSync && strings.HasPrefix(name, "control") {
			if len(lostAcked) == 0 {
				t.Fatalf("%s: every acknowledged block survived the power loss without fsync: the simulation proves nothing", name)
			}
		} else if fmt.Sprint(lostAcked) != fmt.Sprint(nonNil(gone)) {
			t.Fatalf("%s: acknowledged blocks %v lost; want %v", name, lostAcked, nonNil(gone))
		}
		if rec := s.log.recovered; rec.seg != 0 && segmentSize(t, dir, rec.seg) > rec.size {
			t.Fatalf("%s: segment %d keeps %d bytes past its synced size %d", name, rec.seg, segmentSize(t, dir, rec.seg)-rec.size, rec.size)
		}
		if n := staleEntries(t, s); n != len(lostAcked) {
			t.Fatalf("%s: %d index entries point outside the log; want %d (the acknowledged blocks lost)", name, n, len(lostAcked))
		}
		st, err := s.Verify(ctx, func(Problem) {})
		if err != nil || st.Missing != len(lostAcked) || st.Corrupt != len(corrupt) {
			t.Fatalf("%s: Verify: %+v, %v; want %d missing, %d corrupt", name, st, err, len(lostAcked), len(corrupt))
		}
		t.Logf("%s: %d of %d acknowledged blocks lost, %d of %d unacknowledged survived", name, len(lostAcked), acked, survived, len(puts)-acked)

		// The store goes on.
		var more []crashPut
		for i := range 20 {
			c, data := testBlock(t, 1_000_000+uint64(i), 200<<10)
			if err := s.Put(ctx, c, data); err != nil {
				t.Fatalf("%s: Put after reopening: %v", name, err)
			}
			more = append(more, crashPut{seed: 1_000_000 + uint64(i), size: len(data)})
		}
		if err := s.Close(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s = openTest(t, dir)
		for _, p := range more {
			c, data := testBlock(t, p.seed, p.size)
			checkBlock(t, s, c, data)
		}
	}

	f("power loss", false, func(t *testing.T, dir string, _ []crashPut, _ int) (gone, corrupt []int) {
		loseUnsynced(t, dir)
		return nil, nil
	})
	f("kill -9 right after a Sync with NoSync", true, func(*testing.T, string, []crashPut, int) (gone, corrupt []int) {
		return nil, nil
	})
	f("control: power loss with NoSync", true, func(t *testing.T, dir string, _ []crashPut, _ int) (gone, corrupt []int) {
		loseUnsynced(t, dir)
		return nil, nil
	})
	f("torn tail: the last record on disk cut in half", false, func(t *testing.T, dir string, puts []crashPut, acked int) (gone, corrupt []int) {
		for i := len(puts) - 1; i >= acked; i-- {
			p := puts[i]
			if segmentSize(t, dir, p.at.seg) >= p.at.end() {
				if err := os.Truncate(segmentName(filepath.Join(dir, "blocks"), p.at.seg), int64(p.at.off+uint64(p.at.n)/2)); err != nil {
					t.Fatal(err)
				}
				return nil, nil
			}
		}
		t.Fatal("no unacknowledged block reached the disk: nothing to tear")
		return nil, nil
	})
	f("torn tail: power loss, then the last synced record cut in half", false, func(t *testing.T, dir string, puts []crashPut, acked int) (gone, corrupt []int) {
		loseUnsynced(t, dir)
		p := puts[acked-1]
		if err := os.Truncate(segmentName(filepath.Join(dir, "blocks"), p.at.seg), int64(p.at.off+uint64(p.at.n)/2)); err != nil {
			t.Fatal(err)
		}
		return []int{acked - 1}, nil
	})
	f("an acknowledged block's byte flipped", false, func(t *testing.T, dir string, puts []crashPut, acked int) (gone, corrupt []int) {
		p := puts[acked/2]
		flipByte(t, dir, p.at.seg, p.at.off+uint64(p.at.n)/2)
		return nil, []int{acked / 2}
	})
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}

// Compaction crash test. A child process (TestCompactCrashHelper) fills
// segments 1 to 4 as TestCompact does, then Collects with the same roots,
// which compacts segments 1, 2 and 4, and SIGKILLs itself at a step of the
// first compaction (compactHook). The parent reopens the store, after
// dropping the log's unsynced data too in the power-loss cases.
const (
	compactEnvDir  = "LOCALSTORE_COMPACT_DIR"
	compactEnvStep = "LOCALSTORE_COMPACT_STEP"
)

// compactKeep are the blocks (of 41, ten to a segment) TestCompact and the
// crash test keep: segment 1 20% live, 2 50%, 3 60%, 4 nothing.
var compactKeep = []int{3, 7, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25}

func compactBlocks(t *testing.T) (all, live []stored) {
	t.Helper()
	for i := range 41 {
		c, data := testBlock(t, uint64(i), 100<<10)
		all = append(all, stored{c, data})
		if contains(compactKeep, i) {
			live = append(live, stored{c, data})
		}
	}
	return all, live
}

func TestCompactCrashHelper(t *testing.T) {
	dir := os.Getenv(compactEnvDir)
	if dir == "" {
		t.Skip("helper process for TestCompactionCrash")
	}
	maxSegmentSize = 1 << 20
	rec, err := os.OpenFile(filepath.Join(dir, crashFsyncsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fsyncHook = func(f vfs.File) {
		st, err := f.Stat()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(rec, "%s %d\n", st.Name(), st.Size())
	}
	step := os.Getenv(compactEnvStep)
	compactHook = func(s string) {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.log.direct == nil {
		t.Fatal("no O_DIRECT in the helper")
	}
	all, live := compactBlocks(t)
	for _, b := range all {
		if err := s.Put(context.Background(), b.c, b.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Collect(context.Background(), rawRoots(live), car.Links); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("the compaction never reached step %q", step)
}

// TestCompactionCrash: killed at any step of a compaction, with or without
// losing the log's unsynced data, the store reopens with every live block
// intact and every removed block absent; a segment whose entries were
// moved is gone after Open, one whose were not after the next Compact; and
// after the next Collect no segment is left at most half live: the copies
// a crash stranded are reclaimed too.
func TestCompactionCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ten child processes")
	}
	smallSegments(t)
	f := func(step string, powerLoss bool) {
		t.Helper()
		name := step
		if powerLoss {
			name += " + power loss"
		}
		ctx := context.Background()
		dir := directDir(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCompactCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), compactEnvDir+"="+dir, compactEnvStep+"="+step)
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: helper did not die of SIGKILL: %v; output:\n%s", name, err, out)
		}
		if got := contains(segmentIDs(t, dir), 1); got != (step != "removed") {
			t.Fatalf("%s: at the kill, segment 1 exists: %v", name, got)
		}
		if powerLoss {
			loseUnsynced(t, dir)
		}

		s := openTest(t, dir)
		all, live := compactBlocks(t)
		check := func(when string) {
			t.Helper()
			for i, b := range all {
				if contains(compactKeep, i) {
					got, err := s.Get(ctx, b.c)
					if err != nil || string(got) != string(b.data) {
						t.Fatalf("%s: %s: live block %d: %d bytes, %v", name, when, i, len(got), err)
					}
				} else if present(t, s, b.c) {
					t.Fatalf("%s: %s: removed block %d is back", name, when, i)
				}
			}
		}
		check("after reopening")
		moved := step == "indexed" || step == "removed"
		if got := contains(segmentIDs(t, dir), 1); got == moved {
			t.Fatalf("%s: after reopening, segment 1 exists: %v; want %v", name, got, !moved)
		}
		if _, err := s.Compact(ctx); err != nil {
			t.Fatalf("%s: Compact: %v", name, err)
		}
		check("after Compact")
		if ids := segmentIDs(t, dir); contains(ids, 1) || contains(ids, 2) || contains(ids, 4) || !contains(ids, 3) {
			t.Fatalf("%s: after Compact, segments %v; want 1, 2 and 4 gone, 3 kept", name, ids)
		}
		if _, err := s.Collect(ctx, rawRoots(live), car.Links); err != nil {
			t.Fatalf("%s: Collect: %v", name, err)
		}
		check("after Collect")
		counts, err := s.liveCounts()
		if err != nil {
			t.Fatal(err)
		}
		var total, liveBytes uint64
		for seg, size := range s.log.sealed() {
			total += size
			liveBytes += counts[seg]
			if counts[seg] <= uint64(DefaultCompactThreshold*float64(size)) {
				t.Fatalf("%s: after Collect, segment %d is %d of %d bytes live", name, seg, counts[seg], size)
			}
		}
		t.Logf("%s: sealed segments hold %d bytes, %d live", name, total, liveBytes)
	}
	for _, step := range []string{"copying", "copied", "synced", "indexed", "removed"} {
		f(step, false)
		f(step, true)
	}
}

// segmentIDs returns the ids of the segment files in dir.
func segmentIDs(t *testing.T, dir string) []int {
	t.Helper()
	var ids []int
	for _, id := range segmentFiles(t, dir) {
		ids = append(ids, int(id))
	}
	return ids
}
