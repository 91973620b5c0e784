package localstore

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	datastore "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// Failed writes (docs/reliability.md, "Out of space").
//
// The store has two states, and moves only from the first to the second:
//
//	writable --(a write fails: block log, fsync, pebble write, or a pebble
//	            flush/compaction with a disk error)--> read-only
//	(Open starts read-only when the disk has no room to open read-write)
//
// In the read-only state every write (Put, Sync, Collect, Compact, writes
// through Datastore()) is refused at once with a *ReadOnlyError, before it
// touches the disk; reads go on. Only a new Open (a restart) leaves it,
// because neither side of the store can take writes again in place:
// pebble's WAL writer keeps its first error forever (record.LogWriter's
// flusher err), so every later write fails, and rotating the WAL (a full
// memtable, DB.Flush) panics on that error (DB.rotateWAL); the block log's
// O_DIRECT writer also keeps its first error (directWriter.err), because
// the buffers after it may be lost. Reopening replays the WAL up to the
// failed write and forgets the log past the last watermark, which is
// exactly what a crash there would leave.
//
// The state is one atomic pointer (health.failure), nil while writable;
// the first failure wins a CompareAndSwap and is the only one logged.
// A write that already checked the state when another one fails may still
// run and fail (or succeed: then it is durable, as before the failure); an
// add is acknowledged only after Sync, which checks the state first.

// ErrReadOnly is matched (errors.Is) by every write refused because the
// store is read-only: a write failed since Open, or Open found no room to
// open read-write. The error is a *ReadOnlyError; when the cause was a
// full disk it also matches syscall.ENOSPC.
var ErrReadOnly = errors.New("localstore: store is read-only")

// ReadOnlyError is the error of a write refused in the read-only state,
// and of the write whose failure started it.
type ReadOnlyError struct {
	// Err is the first write that failed, or why Open could not open the
	// store read-write. It matches syscall.ENOSPC on a full disk.
	Err error
	// Since is when the store became read-only.
	Since time.Time
}

func (e *ReadOnlyError) Error() string {
	return fmt.Sprintf("%s since %s (writes are refused until ingestd restarts with free space): %v",
		ErrReadOnly, e.Since.UTC().Format(time.RFC3339), e.Err)
}

func (e *ReadOnlyError) Is(target error) bool { return target == ErrReadOnly }
func (e *ReadOnlyError) Unwrap() error        { return e.Err }

// health holds the write state of one Store, and pebble's event handler:
// it exists before the pebble database it listens to.
type health struct {
	failure atomic.Pointer[ReadOnlyError]
	logf    func(format string, args ...any)
	// bgErrors counts pebble's background errors; only the first is
	// logged, because pebble retries a failed flush at once and forever
	// (compaction.go, DB.flush: "TODO(peter): count consecutive flush
	// errors and backoff"), which logged thousands of lines a second.
	bgErrors     atomic.Int64
	pebbleErrors atomic.Int64 // pebble's Errorf lines, see pebbleLogger
}

func newHealth(logf func(string, ...any)) *health {
	if logf == nil {
		logf = log.Printf
	}
	return &health{logf: logf}
}

// writable returns nil, or the *ReadOnlyError that refuses writes.
func (h *health) writable() error {
	if f := h.failure.Load(); f != nil {
		return f
	}
	return nil
}

// fail records that a write failed with err, making the store read-only
// if it was not, and returns the error to report: err itself when it is
// not a failed write (the context ended, the store is closed), else the
// *ReadOnlyError (the first one, whose Err is the first failure).
func (h *health) fail(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrClosed) || errors.Is(err, pebble.ErrClosed) || errors.Is(err, ErrReadOnly) {
		return err
	}
	f := &ReadOnlyError{Err: err, Since: time.Now()}
	if h.failure.CompareAndSwap(nil, f) {
		h.logf("localstore: a write failed, the store is read-only until restarted (reads go on, writes are refused): %v", err)
		return f
	}
	return h.failure.Load()
}

// wrote returns what a write that returned err reports: err if it failed
// (and the store is then read-only), else the read-only error if the store
// became read-only meanwhile (pebbleLogger.Fatalf records a failed WAL
// write while the commit returns nil), else nil.
func (h *health) wrote(err error) error {
	if err != nil {
		return h.fail(err)
	}
	return h.writable()
}

// backgroundError is pebble's EventListener.BackgroundError: a failed
// flush or compaction. A disk error makes the store read-only (the flush
// will be retried in a loop until there is room again, or Close); any
// other is logged the first time only.
func (h *health) backgroundError(err error) {
	n := h.bgErrors.Add(1)
	if diskError(err) {
		h.fail(fmt.Errorf("cannot run pebble's background work: %w", err))
		return
	}
	if n == 1 {
		h.logf("localstore: pebble background error (later ones are counted, not logged): %v", err)
	}
}

// diskError reports an error of the disk or file system, as opposed to
// one of pebble's own (a cancelled compaction, corruption).
func diskError(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO)
}

// listen installs h's handlers in popts, keeping any other event
// handler, and h's logger.
func (h *health) listen(popts *pebble.Options) {
	var l pebble.EventListener
	if popts.EventListener != nil {
		l = *popts.EventListener
	}
	l.BackgroundError = h.backgroundError
	popts.EventListener = &l
	popts.Logger = pebbleLogger{h}
}

// maxPebbleErrorLines bounds the lines pebble's Errorf may log.
const maxPebbleErrorLines = 10

// commitFatal is the format of pebble's Fatalf when a commit's WAL write
// failed (DB.applyInternal). pebble.DefaultLogger exits the process there;
// pebbleLogger makes the store read-only instead (TestFailedWriteIsReadOnly
// fails if pebble changes the message).
const commitFatal = "pebble: fatal commit error: %v"

// pebbleLogger is pebble's Logger: its info lines are dropped (go-ds-pebble's
// logger hid them too), its error lines bounded.
type pebbleLogger struct{ h *health }

func (pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	if n := l.h.pebbleErrors.Add(1); n <= maxPebbleErrorLines {
		l.h.logf("localstore: pebble: "+format, args...)
		if n == maxPebbleErrorLines {
			l.h.logf("localstore: pebble: later error lines are not logged")
		}
	}
}

// Fatalf, for a commit whose WAL write failed, records the failure and
// returns: the commit then returns nil to its caller, which checks the
// state after every write (health.wrote), so nothing that failed is
// reported written; the batch is in the memtable, visible to reads until
// a restart, which does not replay it. Pebble is safe to go on here as long
// as nothing is written: its WAL writer keeps the error, so the memtable
// is never flushed (rotating the WAL panics first). Every other Fatalf is
// an invariant violation or a failed MANIFEST write, after which pebble
// may not go on (a flush would delete a WAL the MANIFEST does not replace):
// the process exits, as with pebble's DefaultLogger, and a restart opens
// the store (read-only if the disk is still full).
func (l pebbleLogger) Fatalf(format string, args ...any) {
	if format == commitFatal && len(args) == 1 {
		if err, ok := args[0].(error); ok {
			l.h.fail(fmt.Errorf("cannot commit to pebble's WAL: %w", err))
			return
		}
	}
	l.h.logf("localstore: pebble: fatal: "+format, args...)
	os.Exit(1)
}

// openRoom is the free space Open wants beyond the WAL it replays (a new
// WAL, MANIFEST and OPTIONS file, the block log's state): below it, Open
// starts the store read-only.
const openRoom = 4 << 20

// roomToOpen returns nil if dir's file system has room to open the store
// read-write, or an error matching syscall.ENOSPC. Opening read-write
// replays pebble's WAL into memtables and flushes them before Open
// returns; on a full disk that flush fails and pebble retries it forever,
// so Open never returned (issue 11). The check cannot see space taken
// between it and the flush; that flush then waits for room. dir is a
// path of the OS's file system (with pebble's in-memory one, statfs finds
// nothing and the check passes); a missing directory needs no room.
func roomToOpen(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil // a new store, or no statfs: Open reports what is wrong
	}
	free := st.Bavail * uint64(st.Bsize)
	need := uint64(openRoom)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		// The WALs (NNNNNN.log) are what Open flushes; a flushed table
		// is not larger than the WAL it comes from.
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			need += uint64(fi.Size())
		}
	}
	if free < need {
		return fmt.Errorf("cannot open store %s read-write: %d bytes free, %d needed: %w", dir, free, need, syscall.ENOSPC)
	}
	return nil
}

// openReadOnly opens the store read-only because cause kept it from
// opening read-write; every write returns a *ReadOnlyError with cause.
func openReadOnly(dir string, opts Options, popts *pebble.Options, h *health, cause error) (*Store, error) {
	h.failure.Store(&ReadOnlyError{Err: cause, Since: time.Now()})
	ds, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(popts))
	if err != nil {
		return nil, fmt.Errorf("cannot open block store in %s read-only (%w), after: %w", dir, err, cause)
	}
	fs := popts.FS
	if fs == nil {
		fs = vfs.Default
	}
	log, err := openBlockLogReadOnly(fs, fs.PathJoin(dir, "blocks"), ds.DB)
	if err != nil {
		closeDB(ds.DB)
		return nil, fmt.Errorf("cannot open block store in %s read-only (%w), after: %w", dir, err, cause)
	}
	h.logf("localstore: store %s opened read-only, writes are refused until a restart with free space: %v", dir, cause)
	return newStore(dir, opts, ds, log, h), nil
}

// closeDB closes the pebble database without flushing its memtables:
// go-ds-pebble's Close calls DB.Flush first, which on a full disk waits
// forever for a flush pebble retries in a loop, and panics after a failed
// WAL write (DB.rotateWAL). Nothing is lost without it: DB.Close syncs the
// WAL, and the next Open replays it. Nothing else of go-ds-pebble needs
// closing: it owns no cache here (pebble's is sized by CacheSize), and its
// query goroutines have ended (no method runs concurrently with Close).
func closeDB(db *pebble.DB) error {
	return db.Close()
}

// guardedDatastore is the metadata datastore (Datastore()): it refuses
// writes in the read-only state and records a failed one.
type guardedDatastore struct {
	datastore.Batching
	h *health
}

func (g *guardedDatastore) Put(ctx context.Context, k datastore.Key, v []byte) error {
	if err := g.h.writable(); err != nil {
		return err
	}
	return g.h.wrote(g.Batching.Put(ctx, k, v))
}

func (g *guardedDatastore) Delete(ctx context.Context, k datastore.Key) error {
	if err := g.h.writable(); err != nil {
		return err
	}
	return g.h.wrote(g.Batching.Delete(ctx, k))
}

func (g *guardedDatastore) Sync(ctx context.Context, prefix datastore.Key) error {
	if err := g.h.writable(); err != nil {
		return err
	}
	return g.h.wrote(g.Batching.Sync(ctx, prefix))
}

func (g *guardedDatastore) Batch(ctx context.Context) (datastore.Batch, error) {
	if err := g.h.writable(); err != nil {
		return nil, err
	}
	b, err := g.Batching.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &guardedBatch{Batch: b, h: g.h}, nil
}

type guardedBatch struct {
	datastore.Batch
	h *health
}

func (b *guardedBatch) Commit(ctx context.Context) error {
	if err := b.h.writable(); err != nil {
		return err
	}
	return b.h.wrote(b.Batch.Commit(ctx))
}

// Writable returns nil while the store takes writes, else the
// *ReadOnlyError (matching ErrReadOnly, and syscall.ENOSPC after a full
// disk) that every write returns: a caller can refuse an add before
// reading its upload.
func (s *Store) Writable() error { return s.writable() }

// osFSOf reports whether popts writes to the OS's file system.
func osFSOf(popts *pebble.Options) bool { return popts.FS == nil || popts.FS == vfs.Default }
