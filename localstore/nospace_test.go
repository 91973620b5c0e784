package localstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"

	"github.com/ingestd/ingestd/internal/disktest"
)

// logLines collects what a store logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// plainFS is the OS's file system under another type: the block log then
// writes through the page cache, as on a file system without O_DIRECT.
type plainFS struct{ vfs.FS }

// TestOutOfSpace fills a real tmpfs with Puts, for the O_DIRECT and the
// buffered block log: the write that fails returns an error matching
// ErrReadOnly and ENOSPC; later writes are refused the same way without
// touching the disk, even once space is free again; synced blocks and
// metadata still read; Close returns; a reopen on the still-full disk
// opens read-only and serves them; a reopen with space takes writes.
func TestOutOfSpace(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) { testOutOfSpace(t, direct) })
	}
}

func testOutOfSpace(t *testing.T, direct bool) {
	ctx := context.Background()
	mnt := disktest.MountTmpfs(t, "32m")
	spare := filepath.Join(mnt, "spare")
	if err := os.WriteFile(spare, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "store")
	logs := &logLines{}
	opts := Options{Logf: logs.logf}
	open := func() *Store {
		t.Helper()
		popts := pebbleOptions()
		if !direct {
			popts.FS = plainFS{vfs.Default}
		}
		s, err := open(dir, opts, popts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	if s.log.directOn() != direct {
		if direct && requireDirect() {
			t.Fatal("the tmpfs refuses O_DIRECT (a kernel before 6.6?); CI=true or INGESTD_REQUIRE_KUBO is set, so this is a failure")
		} else if direct {
			t.Skip("the tmpfs refuses O_DIRECT (a kernel before 6.6?)")
		}
		t.Fatalf("direct I/O is %v, want %v", s.log.directOn(), direct)
	}
	metaKey := datastore.NewKey("/pins/kept")
	if err := s.Datastore().Put(ctx, metaKey, []byte("v")); err != nil {
		t.Fatal(err)
	}
	type block struct {
		c    cid.Cid
		data []byte
	}
	var synced, pending []block
	var failure error
	for i := 0; failure == nil; i++ {
		if i == 1000 {
			t.Fatal("the disk never filled")
		}
		c, data := testBlock(t, uint64(i), 256<<10)
		if err := s.Put(ctx, c, data); err != nil {
			failure = err
			break
		}
		pending = append(pending, block{c, data})
		if i%4 == 3 {
			if err := s.Sync(ctx); err != nil {
				failure = err
				break
			}
			synced, pending = append(synced, pending...), nil
		}
	}
	if !errors.Is(failure, ErrReadOnly) || !errors.Is(failure, syscall.ENOSPC) {
		t.Fatalf("the write that filled the disk: %v; want ErrReadOnly and ENOSPC", failure)
	}
	if len(synced) == 0 {
		t.Fatal("nothing was synced before the disk filled")
	}
	if err := s.Writable(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Writable() = %v, want an error matching ENOSPC", err)
	}

	// Room again: a write that were attempted would now succeed, so an
	// unchanged disk shows that none was.
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	used := disktest.UsedBytes(t, dir)
	c, data := testBlock(t, 100000, 1000)
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s in the read-only state: %v; want ErrReadOnly and ENOSPC", what, err)
		}
	}
	refused("Put", s.Put(ctx, c, data))
	refused("Sync", s.Sync(ctx))
	refused("Datastore().Put", s.Datastore().Put(ctx, datastore.NewKey("/pins/new"), []byte("v")))
	_, err := s.Datastore().Batch(ctx)
	refused("Datastore().Batch", err)
	_, err = s.Collect(ctx, func(func(Root) error) error { return nil }, nil)
	refused("Collect", err)
	_, err = s.Compact(ctx)
	refused("Compact", err)
	if got := disktest.UsedBytes(t, dir); got != used {
		t.Fatalf("refused writes changed the store's files: %d bytes on disk, then %d", used, got)
	}
	for _, b := range synced {
		checkBlock(t, s, b.c, b.data)
	}
	if v, err := s.Datastore().Get(ctx, metaKey); err != nil || string(v) != "v" {
		t.Fatalf("Datastore().Get in the read-only state = %q, %v", v, err)
	}
	// One line for the transition, whatever the number of refused writes
	// and of pebble's retried flushes.
	if n := logs.count(); n < 1 || n > 2 {
		t.Fatalf("%d log lines about the failure, want 1 (2 with a pebble background error):\n%s", n, strings.Join(logs.lines, "\n"))
	}
	// The test's deadline bounds a Close that does not return.
	if err := s.Close(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Close in the read-only state: %v, want ErrReadOnly (what was put since the last Sync is lost)", err)
	}

	// Restart on the still-full disk: read-only, reads served.
	disktest.Fill(t, spare)
	s = open()
	if err := s.Writable(); !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Writable() after opening on a full disk = %v, want ErrReadOnly and ENOSPC", err)
	}
	refused("Put after opening on a full disk", s.Put(ctx, c, data))
	for _, b := range synced {
		checkBlock(t, s, b.c, b.data)
	}
	for _, b := range pending {
		if has, _ := s.Has(ctx, b.c); has {
			t.Fatalf("Has(%s) = true for a block put but never synced", b.c)
		}
	}
	if v, err := s.Datastore().Get(ctx, metaKey); err != nil || string(v) != "v" {
		t.Fatalf("Datastore().Get after opening read-only = %q, %v", v, err)
	}
	s.Close()

	// Space back: a restart takes writes again.
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	if err := s.Writable(); err != nil {
		t.Fatalf("Writable() after freeing space = %v", err)
	}
	if err := s.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	checkBlock(t, s, c, data)
	for _, b := range synced {
		checkBlock(t, s, b.c, b.data)
	}
}

// TestFailedWriteIsReadOnly injects an ENOSPC into pebble's WAL (the block
// log's failures are TestWriteFailure's and TestOutOfSpace's): the write
// fails with ErrReadOnly and ENOSPC, the next ones are refused without
// reaching pebble, and Close returns. Without the state, the second
// write reached pebble's failed WAL, and Close panicked in DB.Flush.
func TestFailedWriteIsReadOnly(t *testing.T) {
	ctx := context.Background()
	fsys := &failFS{FS: vfs.NewMem()}
	popts := pebbleOptions()
	popts.FS = fsys
	s, err := open("/db", Options{Logf: (&logLines{}).logf}, popts)
	if err != nil {
		t.Fatal(err)
	}
	c1, d1 := testBlock(t, 1, 1000)
	if err := s.Put(ctx, c1, d1); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fsys.failing.Store(true)
	c2, d2 := testBlock(t, 2, 1000)
	err = s.Put(ctx, c2, d2)
	if err == nil {
		err = s.Sync(ctx)
	}
	if !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write to a failing WAL: %v; want ErrReadOnly and ENOSPC", err)
	}
	writes := fsys.writes.Load()
	fsys.failing.Store(false)
	c3, d3 := testBlock(t, 3, 1000)
	if err := s.Put(ctx, c3, d3); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Put after the failure: %v, want ErrReadOnly", err)
	}
	if err := s.Datastore().Put(ctx, datastore.NewKey("/x"), nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Datastore().Put after the failure: %v, want ErrReadOnly", err)
	}
	if n := fsys.writes.Load(); n != writes {
		t.Fatalf("%d more writes to pebble's files after the failure", n-writes)
	}
	checkBlock(t, s, c1, d1)
	if err := s.Close(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Close: %v, want ErrReadOnly", err)
	}
	s, err = open("/db", Options{}, func() *pebble.Options { o := pebbleOptions(); o.FS = fsys; return o }())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkBlock(t, s, c1, d1)
	if err := s.Put(ctx, c3, d3); err != nil {
		t.Fatal(err)
	}
}

// failFS fails the writes of pebble's WAL files (NNNNNN.log in the
// database's directory, not the block log's segments) with ENOSPC while
// failing is set, and counts the writes to pebble's files.
type failFS struct {
	vfs.FS
	failing atomic.Bool
	writes  atomic.Int64
}

func (f *failFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil || f.FS.PathBase(f.FS.PathDir(name)) == "blocks" {
		return file, err
	}
	return &failFile{File: file, fs: f, wal: strings.HasSuffix(name, ".log")}, nil
}

func (f *failFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, c)
	return f.wrap(name, file, err)
}

func (f *failFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := f.FS.OpenReadWrite(name, c, opts...)
	return f.wrap(name, file, err)
}

func (f *failFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.ReuseForWrite(oldname, newname, c)
	return f.wrap(newname, file, err)
}

type failFile struct {
	vfs.File
	fs  *failFS
	wal bool
}

func (f *failFile) Write(p []byte) (int, error) {
	f.fs.writes.Add(1)
	if f.wal && f.fs.failing.Load() {
		return 0, &os.PathError{Op: "write", Path: "wal", Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (f *failFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.writes.Add(1)
	if f.wal && f.fs.failing.Load() {
		return 0, &os.PathError{Op: "write", Path: "wal", Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}
