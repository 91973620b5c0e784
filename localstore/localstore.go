package localstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/datastore/dshelp"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	pebbleds "github.com/ipfs/go-ds-pebble"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// Pebble tuning. Pebble holds the block index (a 20-byte value per block
// under a ~60-byte key: a random hash, written once, read on every Put and
// Get, deleted by Collect), the log's state and the pin records. These
// settings were chosen when blocks lived in pebble and measured then with
// BenchmarkPut; they are kept because they still fit the index and are not
// re-measured for it (doc.go).
const (
	// memTableSize is the size of one memtable. Pebble starts at 256 KiB,
	// doubles it at each rotation up to this, and flushes only once the
	// queued memtables add up to half of it: with 64 MiB, the first 32 MiB
	// of index entries (about 270,000 blocks, 27 adds of 10,000 small
	// files) stayed in up to 8 memtables, and the lookup that runs before
	// every Put searched each skiplist in turn: 33% of the CPU of an add of
	// 4 KiB files (issue 10, figure 1; BENCHMARKS.md). 8 MiB keeps at most
	// 5 during that ramp and 1–2 after it, still about 70,000 entries
	// (17 GiB of 256 KiB blocks) per flush.
	memTableSize = 8 << 20

	// memTableStopWritesThreshold is how many memtables may be queued for
	// flushing before writes stall.
	memTableStopWritesThreshold = 4

	// l0TargetFileSize is the target size of flushed tables: a memtable
	// flushes to one table instead of pebble's 2 MiB pieces.
	l0TargetFileSize = 64 << 20

	// walBytesPerSync starts background write-back of the WAL every 1 MiB
	// (sync_file_range, not fsync), so the fsync at Sync finds little
	// dirty data left.
	walBytesPerSync = 1 << 20

	// cacheSize is pebble's block cache: index and filter blocks, and the
	// data blocks of the index entries looked up.
	cacheSize = 64 << 20
)

// ErrNotFound is returned (wrapped) by Get when the block is not stored.
// The error Get returns also matches ipld.ErrNotFound, so
// ipld.IsNotFound(err) is true for it as well.
var ErrNotFound = errors.New("localstore: block not found")

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("localstore: store closed")

// Options configures Open. The zero value is the production setting.
type Options struct {
	// NoSync makes Sync (and Close) skip the fsync of the block log's
	// segments (pebble's WAL is still fsynced, see doc.go): acknowledged
	// blocks survive a crash of the process (kill -9), not of the machine,
	// as with kubo's default flatfs (sync: false). ingestd's --no-fsync
	// sets it. Compaction fsyncs regardless, because it deletes data that
	// was durable. Default false.
	NoSync bool

	// CompactThreshold is the live fraction at or below which a sealed
	// segment is compacted after Collect (see compact.go): its live
	// blocks are copied to the end of the log and its file deleted. 0
	// means DefaultCompactThreshold (0.5); a negative value turns
	// compaction off, leaving removed blocks' bytes on disk.
	CompactThreshold float64

	// Logf logs the store's one line about turning read-only (a write
	// failed, see nospace.go) and pebble's first background error.
	// Default nil: log.Printf.
	Logf func(format string, args ...any)
}

// blocksPrefix is boxo's blockstore namespace; metaPrefix holds everything
// else (the pinset) and never overlaps it.
var (
	blocksPrefix = blockstore.BlockPrefix // "/blocks"
	metaPrefix   = datastore.NewKey("/meta")
)

// Store is the embedded block store: block data in an append-only log, and
// one pebble database holding the block index under /blocks (keyed by
// multihash, as boxo's blockstore does) and the metadata datastore under
// /meta. See doc.go.
//
// All methods are safe for concurrent use, except that none may be called
// concurrently with or after Close (they return ErrClosed after Close when
// the call does not race with it).
type Store struct {
	ds     *pebbleds.Datastore
	db     *pebble.DB
	log    *blockLog
	meta   datastore.Batching
	noSync bool
	dir    string
	closed atomic.Bool
	// health is the write state: writable, or read-only after a failed
	// write or an Open without room (nospace.go).
	*health
	gcMu sync.RWMutex // Collect holds it to write, Hold to read; see gc.go
	// compactMu is held by Collect and Compact: one of them at a time
	// (compact.go). Collect takes it before gcMu.
	compactMu sync.Mutex
	threshold float64 // Options.CompactThreshold, default applied
}

// Open opens the store in dir, creating the directory and the database if
// needed.
func Open(dir string, opts Options) (*Store, error) {
	return open(dir, opts, pebbleOptions())
}

func open(dir string, opts Options, popts *pebble.Options) (*Store, error) {
	h := newHealth(opts.Logf)
	h.listen(popts)
	// A copy before pebble fills in its defaults (and wraps FS), for a
	// read-only retry.
	roOpts := *popts
	roOpts.ReadOnly = true
	if err := roomToOpen(dir); err != nil {
		return openReadOnly(dir, opts, &roOpts, h, err)
	}
	s, err := openWritable(dir, opts, popts, h)
	if err != nil && diskError(err) {
		return openReadOnly(dir, opts, &roOpts, h, err)
	}
	return s, err
}

func newStore(dir string, opts Options, ds *pebbleds.Datastore, log *blockLog, h *health) *Store {
	s := &Store{
		ds:        ds,
		db:        ds.DB,
		log:       log,
		meta:      &guardedDatastore{Batching: namespace.Wrap(ds, metaPrefix), h: h},
		noSync:    opts.NoSync,
		dir:       dir,
		health:    h,
		threshold: opts.CompactThreshold,
	}
	if s.threshold == 0 {
		s.threshold = DefaultCompactThreshold
	}
	return s
}

// openWritable opens the store read-write. On an error nothing stays
// open, and pebble is closed without the flush go-ds-pebble's Close
// would do (closeDB).
func openWritable(dir string, opts Options, popts *pebble.Options, h *health) (*Store, error) {
	// Direct I/O only on the OS's file system (pebble wraps popts.FS once
	// it opens, so this is decided before).
	osFS := osFSOf(popts)
	// WithPebbleWriteOptions(pebble.NoSync) is go-ds-pebble's default already;
	// it is spelled out because Put relies on it (no fsync per block).
	ds, err := pebbleds.NewDatastore(dir,
		pebbleds.WithPebbleOpts(popts),
		pebbleds.WithPebbleWriteOptions(pebble.NoSync),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot open block store in %s: %w", dir, err)
	}
	fs := popts.FS
	if fs == nil {
		fs = vfs.Default
	}
	// The marker goes before anything is written: the synced write that
	// starts the first segment makes its removal durable.
	clean, err := takeCleanMarker(ds.DB)
	if err != nil {
		closeDB(ds.DB)
		return nil, fmt.Errorf("cannot open block store in %s: %w", dir, err)
	}
	log, err := openBlockLog(fs, fs.PathJoin(dir, "blocks"), ds.DB, osFS)
	if err != nil {
		closeDB(ds.DB)
		return nil, fmt.Errorf("cannot open block store in %s: %w", dir, err)
	}
	s := newStore(dir, opts, ds, log, h)
	if !clean {
		if err := s.dropUnacknowledged(); err != nil {
			s.log.close()
			closeDB(ds.DB)
			return nil, fmt.Errorf("cannot open block store in %s: %w", dir, err)
		}
	}
	if err := s.removeDeadSegments(); err != nil {
		s.log.close()
		closeDB(ds.DB)
		return nil, fmt.Errorf("cannot open block store in %s: %w", dir, err)
	}
	// A WAL write that failed above may have returned nil (pebbleLogger).
	if err := h.writable(); err != nil {
		s.log.close()
		closeDB(ds.DB)
		return nil, fmt.Errorf("cannot open block store in %s: %w", dir, err)
	}
	return s, nil
}

// takeCleanMarker reports whether the last Close synced everything, and
// deletes the marker (not synced: the caller's next synced write is).
func takeCleanMarker(db *pebble.DB) (bool, error) {
	_, closer, err := db.Get(keyClean)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read block log state: %w", err)
	}
	closer.Close()
	if err := db.Delete(keyClean, pebble.NoSync); err != nil {
		return false, fmt.Errorf("cannot record block log state: %w", err)
	}
	return true, nil
}

// dropUnacknowledged deletes the index entries of blocks put after the
// last Sync of a run that crashed: their data is past the recovered
// watermark, which Open forgot (pebble may have kept the entries: its WAL
// survives kill -9 and may be flushed before the data). Such entries
// already read as absent; dropping them keeps the index a picture of the
// log, so that Verify's "missing" means acknowledged data lost, and a
// later Put of the block writes it again. It runs after a crash only (no
// clean marker), and reads the whole index: about a second per few
// million blocks.
func (s *Store) dropUnacknowledged() error {
	rec := s.log.recovered
	prefix := []byte(blocksPrefix.String() + "/")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("cannot read the block index: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		at, ok := parseLoc(it.Value())
		if !ok || at.seg < rec.seg || at.seg == rec.seg && at.end() <= rec.size {
			continue
		}
		if err := b.Delete(bytes.Clone(it.Key()), nil); err != nil {
			it.Close()
			return fmt.Errorf("cannot drop unacknowledged blocks: %w", err)
		}
		n++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("cannot read the block index: %w", err)
	}
	if n == 0 {
		return nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cannot drop %d unacknowledged blocks: %w", n, err)
	}
	return nil
}

// FreeSpace returns the bytes an unprivileged writer can still use on the
// store's file system: the freespace metric of the embedded peer.
func (s *Store) FreeSpace() (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return 0, fmt.Errorf("cannot stat the file system of %s: %w", s.dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// pebbleOptions returns the pebble settings; see the constants above.
func pebbleOptions() *pebble.Options {
	o := &pebble.Options{
		// An explicit format: the default is the oldest supported one.
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTableStopWritesThreshold,
		WALBytesPerSync:             walBytesPerSync,
		CacheSize:                   cacheSize,
		// Two cores: one compaction normally, a second one when L0 backs up.
		CompactionConcurrencyRange: func() (int, int) { return 1, 2 },
	}
	o.TargetFileSizes[0] = l0TargetFileSize
	for i := range o.Levels {
		// Has runs before every Put (dedup) and nearly always misses: bloom
		// filters answer that without reading index or data blocks.
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

// blockKey is the index key of a block: the key boxo's blockstore (with
// its default /blocks prefix) would use.
func blockKey(c cid.Cid) datastore.Key {
	return blocksPrefix.Child(dshelp.MultihashToDsKey(c.Hash()))
}

// identityData returns the inline data of an identity-hash CID.
func identityData(c cid.Cid) ([]byte, bool) {
	if c.Prefix().MhType != mh.IDENTITY {
		return nil, false
	}
	dmh, err := mh.Decode(c.Hash())
	if err != nil {
		return nil, false
	}
	return dmh.Digest, true
}

// Put stores a block. It implements ingest.Sink. It does not fsync: the
// block is durable once a later Sync returns. A block that is already
// stored is not written again. Identity-hash CIDs are not stored (their data
// is in the CID). data is not retained: it is written to the block log.
func (s *Store) Put(ctx context.Context, c cid.Cid, data []byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if _, ok := identityData(c); ok {
		return nil
	}
	// Refused before the dedup lookup too: an add of stored blocks would
	// fail only at its Sync, after reading its whole upload.
	if err := s.writable(); err != nil {
		return fmt.Errorf("cannot put block %s: %w", c, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cannot put block %s: %w", c, err)
	}
	key := blockKey(c).Bytes()
	// The same has-before-put as boxo's blockstore: a duplicate block
	// (repeated chunks, re-uploads) costs a lookup instead of a write.
	s.log.segs.RLock()
	_, ok, err := s.locate(key)
	s.log.segs.RUnlock()
	if err != nil {
		return fmt.Errorf("cannot check block %s: %w", c, err)
	}
	if ok {
		return nil
	}
	sum := checksum(data)
	at, err := s.log.append(data)
	if err != nil {
		return fmt.Errorf("cannot put block %s: %w", c, s.fail(err))
	}
	at.crc, at.hasCRC = sum, true
	if err := s.wrote(s.db.Set(key, at.bytes(), pebble.NoSync)); err != nil {
		return fmt.Errorf("cannot index block %s: %w", c, err)
	}
	return nil
}

// CopiesData marks Store as an ingest.CopyingSink: Put writes data to the
// block log and keeps no reference to it, so importers may reuse their
// buffers once Put returns.
func (s *Store) CopiesData() {}

// ConcurrentPuts marks Store as an ingest.ConcurrentSink: Put is safe from
// several goroutines (the block log reserves each block's extent under its
// lock and writes outside it; pebble takes concurrent sets). Two Puts of
// one new block at once may both write it; the index keeps one, and the
// other copy is dead space, which the next Collect counts and compaction
// reclaims.
func (s *Store) ConcurrentPuts() {}

// Has reports whether the block is stored. It is true for every
// identity-hash CID.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	if _, ok := identityData(c); ok {
		return true, nil
	}
	s.log.segs.RLock()
	_, ok, err := s.locate(blockKey(c).Bytes())
	s.log.segs.RUnlock()
	if err != nil {
		return false, fmt.Errorf("cannot check block %s: %w", c, err)
	}
	return ok, nil
}

// locate returns where the block under key is, if it is stored: an index
// entry that points past what the block log recovered (written but never
// synced before a crash) counts as absent. The caller holds s.log.segs for
// reading (LOCKS.md), and keeps holding it while it reads the data found.
func (s *Store) locate(key []byte) (loc, bool, error) {
	at, ok, err := s.entry(key)
	if err != nil || !ok {
		return loc{}, false, err
	}
	return at, s.log.valid(at), nil
}

// entry returns the index entry under key, valid or not.
func (s *Store) entry(key []byte) (loc, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return loc{}, false, nil
	}
	if err != nil {
		return loc{}, false, err
	}
	at, ok := parseLoc(v)
	closer.Close()
	if !ok {
		return loc{}, false, fmt.Errorf("corrupt index entry of %d bytes", len(v))
	}
	return at, true, nil
}

// Get returns a copy of the block's data, owned by the caller. For an
// identity-hash CID it returns the inline data. An absent block gives an
// error matching both ErrNotFound and ipld.ErrNotFound. Every block read is
// checked against the CRC-32C in its index entry (re-hashed, for entries
// written before the CRC existed): one whose bytes changed is never
// returned, its error matches ErrCorrupt and names its segment and offset.
func (s *Store) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if data, ok := identityData(c); ok {
		return data, nil
	}
	s.log.segs.RLock()
	at, ok, err := s.locate(blockKey(c).Bytes())
	var data []byte
	if err == nil && ok {
		if getHook != nil {
			getHook(c)
		}
		data, err = s.log.read(at)
	}
	s.log.segs.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("cannot get block %s: %w", c, err)
	}
	if !ok {
		return nil, &notFoundError{c: c}
	}
	if !intact(c.Hash(), at, data) {
		return nil, corruptError(c, at)
	}
	return data, nil
}

// getHook, when set by a test, is called by Get between finding a block
// and reading it.
var getHook func(c cid.Cid)

// corruptError is the error of a block whose data fails its check.
func corruptError(c cid.Cid, at loc) error {
	return fmt.Errorf("cannot read block %s at segment %d, offset %d (%d bytes): %w", c, at.seg, at.off, at.n, ErrCorrupt)
}

// Sync makes every Put (and every write through Datastore) that returned
// before Sync was called durable: it writes out the log's buffers, fsyncs
// the segments written since the last Sync, records the log's watermark
// and fsyncs pebble's write-ahead log. With Options.NoSync it does all but
// the fsyncs of the segments, which makes those Puts survive a crash of
// the process, not of the machine.
func (s *Store) Sync(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.sync(ctx, s.noSync)
}

// sync does Sync's work, without fsyncing the segments if noFsync. It is
// refused in the read-only state, and a failure makes the store read-only:
// after a failed fsync, what the file holds is not known.
func (s *Store) sync(ctx context.Context, noFsync bool) error {
	if err := s.writable(); err != nil {
		return fmt.Errorf("cannot sync block store: %w", err)
	}
	if err := s.log.sync(noFsync); err != nil {
		return s.fail(err)
	}
	// The WAL is fsynced even with NoSync: pebble keeps a write without
	// pebble.Sync in the process's memory, not in the page cache, until a
	// 32 KiB WAL block fills or a synced write comes (its WriteOptions
	// doc), so without it a kill -9 right after Sync loses the watermark
	// just recorded, and with it the acknowledged blocks
	// (TestDirectPowerLoss). The segments, nearly all of the bytes, are
	// what NoSync leaves unsynced. go-ds-pebble's Sync ignores the key
	// and fsyncs the whole WAL (an empty LogData record with pebble.Sync).
	if err := s.wrote(s.ds.Sync(ctx, datastore.NewKey("/"))); err != nil {
		return fmt.Errorf("cannot sync block store: %w", err)
	}
	return nil
}

// Datastore returns the metadata datastore: the same pebble database,
// under the /meta prefix, which never overlaps blocks. Its Sync fsyncs the
// WAL like Store.Sync (and is not a no-op with Options.NoSync). Its writes
// are not fsynced until then.
func (s *Store) Datastore() datastore.Batching { return s.meta }

// Close records the log's watermark, syncs, and closes the database
// without flushing its memtables (closeDB: the next Open replays the WAL).
// In the read-only state it only closes: what failed to be written is
// forgotten at the next Open, as after a crash. A Collect or Compact
// in progress stops at its next block or run (returning ErrClosed, having
// changed nothing it had not finished) and Close waits for it. Calling
// Close again is a no-op.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	// A Collect or Compact in progress sees closed and stops at its next
	// block or run, before it changes the index (compact.go).
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	// What was put is kept: record the watermark (and fsync, unless NoSync)
	// as Sync does. Whatever fails, everything is closed: the first error
	// is returned, and the files, the writer and pebble's lock are released.
	// Read-only, nothing more is written (the next Open recovers as after
	// a crash), and Close reports why: what was put since the last Sync is
	// not kept.
	var errs []error
	if err := s.writable(); err != nil {
		errs = append(errs, fmt.Errorf("cannot record block log state: %w", err))
	} else {
		if err := s.log.sync(s.noSync); err != nil {
			errs = append(errs, err)
		} else if err := s.db.Set(keyClean, nil, pebble.NoSync); err != nil {
			errs = append(errs, fmt.Errorf("cannot record block log state: %w", err))
		} else if !s.noSync {
			if err := s.ds.Sync(context.Background(), datastore.NewKey("/")); err != nil {
				errs = append(errs, fmt.Errorf("cannot sync block store: %w", err))
			}
		}
	}
	if err := s.log.close(); err != nil {
		errs = append(errs, fmt.Errorf("cannot close block log: %w", err))
	}
	if err := closeDB(s.db); err != nil {
		errs = append(errs, fmt.Errorf("cannot close block store: %w", err))
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// notFoundError is what Get returns for an absent block. It matches
// ErrNotFound and ipld.ErrNotFound (errors.Is and ipld.IsNotFound).
type notFoundError struct{ c cid.Cid }

func (e *notFoundError) Error() string {
	return "cannot get block " + e.c.String() + ": " + ErrNotFound.Error()
}

func (e *notFoundError) Unwrap() []error {
	return []error{ErrNotFound, ipld.ErrNotFound{Cid: e.c}}
}
