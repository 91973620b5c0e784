package localstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// maxSegmentSize is where the block log starts a new segment file.
var maxSegmentSize uint64 = 1 << 30 // a variable for tests

// fsyncHook, when set (by tests, before Open), is called with each segment
// file just before the log fsyncs it: the power-loss tests record what
// was on disk then, and drop the rest.
var fsyncHook func(f vfs.File)

// writebackBytes: every this many bytes appended start the write-back of
// the segment (sync_file_range, as pebble's WALBytesPerSync), so that the
// disk works while the upload arrives and the fsync at the end of an add
// finds little left to write. Without fsync (Options.NoSync) it is done
// too: it changes nothing of durability, but keeps the page cache from
// filling with dirty pages until the kernel throttles the writer, which
// made --no-fsync adds slower than fsynced ones.
const writebackBytes = 8 << 20

// Keys of the log's own state in the pebble database, outside /blocks and
// /meta.
var (
	keyNextSegment = []byte("/blocklog/next")      // uint32: first unused segment id
	keyWatermark   = []byte("/blocklog/watermark") // segment id, size: the durable extent
	// keyClean is set by a Close that synced everything and deleted by
	// Open: found missing at Open, the last run crashed, and index entries
	// of blocks put after its last Sync may point past the log (localstore.go,
	// dropUnacknowledged).
	keyClean = []byte("/blocklog/clean")
)

// loc is where a block's data is: segment, offset, length, and the CRC-32C
// (Castagnoli) of the data. It is the value of the block's index entry in
// pebble: 20 bytes, or 16 without the CRC in entries written before it
// existed (their blocks are checked by re-hashing instead; see check).
type loc struct {
	seg    uint32
	off    uint64
	n      uint32
	crc    uint32
	hasCRC bool
}

func (l loc) bytes() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint32(b, l.seg)
	binary.BigEndian.PutUint64(b[4:], l.off)
	binary.BigEndian.PutUint32(b[12:], l.n)
	binary.BigEndian.PutUint32(b[16:], l.crc)
	return b
}

func parseLoc(b []byte) (loc, bool) {
	if len(b) != 16 && len(b) != 20 {
		return loc{}, false
	}
	l := loc{seg: binary.BigEndian.Uint32(b), off: binary.BigEndian.Uint64(b[4:]), n: binary.BigEndian.Uint32(b[12:])}
	if len(b) == 20 {
		l.crc, l.hasCRC = binary.BigEndian.Uint32(b[16:]), true
	}
	return l, true
}

// end is the offset just past the block.
func (l loc) end() uint64 { return l.off + uint64(l.n) }

// blockLog holds block data in append-only segment files, <dir>/<id>.log:
// a block is written once, copied into a write buffer that goes to the
// disk with O_DIRECT (direct.go), or with one write(2) into the page cache
// where the file system refuses O_DIRECT. Segments are deleted whole, by
// compaction (compact.go), and never written again once sealed.
//
// Durability: sync fsyncs every segment written since the last sync, then
// records the watermark (current segment, size) in pebble; the caller then
// fsyncs pebble's WAL. open forgets everything past the watermark: later
// segment files are removed and the watermark's segment is cut to its
// size and frozen, so an index entry that points past it (written, never
// synced) reads as absent. Segment ids are never reused (keyNextSegment is
// fsynced before a segment is created), so such an entry can never come to
// point at other data.
//
// Locking (LOCKS.md): writing is held for reading by every append while it
// reserves and writes its range, and for writing by sync only while it
// takes its snapshot, so the watermark never covers a range still being
// written. mu guards the fields below it and is held only to reserve a
// range, look up a file or take the snapshot; writes, reads and fsyncs
// happen outside it, except that starting a segment (once per
// maxSegmentSize bytes) records its id and creates its file under mu.
// Order: writing, then mu.
type blockLog struct {
	fs  vfs.FS
	dir string
	db  *pebble.DB

	// segs is held for reading from an index lookup to the end of the read
	// of the data it found, and for writing while compaction forgets a
	// segment, so that no read of a removed segment is in flight (LOCKS.md).
	segs sync.RWMutex

	syncMu  sync.Mutex // one sync at a time, so watermarks only move forward
	writing sync.RWMutex
	mu      sync.Mutex
	cur     vfs.File
	curID   uint32
	curSize uint64
	nextID  uint32
	dirty   []vfs.File        // segments written since the last sync, cur included
	sizes   map[uint32]uint64 // valid extent of every readable segment
	files   map[uint32]vfs.File

	// recovered is the watermark open recovered: every block put and
	// synced by the previous runs lies before it.
	recovered struct {
		seg  uint32
		size uint64
	}

	// direct writes segments with O_DIRECT (direct.go); nil when the file
	// system is not the OS's or refuses it. curDirect is cur's O_DIRECT
	// file; retired are earlier ones, closed at the next sync once their
	// buffers are written.
	direct    *directWriter
	curDirect *os.File
	retired   []*os.File
}

func segmentName(dir string, id uint32) string {
	return fmt.Sprintf("%s/%08d.log", dir, id)
}

// openBlockLog recovers the log in dir (see blockLog) and starts a new
// segment.
// With osFS, fs is the OS's file system and segments are written with
// direct I/O if it accepts it.
func openBlockLog(fs vfs.FS, dir string, db *pebble.DB, osFS bool) (*blockLog, error) {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create block log %s: %w", dir, err)
	}
	// The directory's own entry must be durable before any segment in it.
	if err := syncDir(fs, fs.PathDir(dir)); err != nil {
		return nil, err
	}
	l, err := loadBlockLog(fs, dir, db, osFS, false)
	if err != nil {
		return nil, err
	}
	if osFS {
		l.direct = newDirectWriter()
	}
	if err := l.newSegment(); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// openBlockLogReadOnly opens the log for reads only, writing nothing (the
// store is read-only, nospace.go): segments past the watermark are
// ignored instead of removed, the watermark's segment is read up to it
// instead of cut, and no segment is started, so append must not be
// called (every write is refused before it).
func openBlockLogReadOnly(fs vfs.FS, dir string, db *pebble.DB) (*blockLog, error) {
	return loadBlockLog(fs, dir, db, false, true)
}

// loadBlockLog reads the log's state and finds its segments, removing
// (unless readOnly) what lies past the watermark.
func loadBlockLog(fs vfs.FS, dir string, db *pebble.DB, osFS, readOnly bool) (*blockLog, error) {
	l := &blockLog{fs: fs, dir: dir, db: db, sizes: map[uint32]uint64{}, files: map[uint32]vfs.File{}, nextID: 1}
	if v, closer, err := db.Get(keyNextSegment); err == nil {
		l.nextID = binary.BigEndian.Uint32(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("cannot read block log state: %w", err)
	}
	var wmSeg uint32
	var wmSize uint64
	if v, closer, err := db.Get(keyWatermark); err == nil {
		wmSeg, wmSize = binary.BigEndian.Uint32(v), binary.BigEndian.Uint64(v[4:])
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("cannot read block log state: %w", err)
	}
	names, err := fs.List(dir)
	if readOnly && errors.Is(err, os.ErrNotExist) {
		names, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list block log %s: %w", dir, err)
	}
	for _, name := range names {
		idStr, ok := strings.CutSuffix(name, ".log")
		id, err := strconv.ParseUint(idStr, 10, 32)
		if !ok || err != nil {
			continue
		}
		path := segmentName(dir, uint32(id))
		switch {
		case uint32(id) > wmSeg || wmSeg == 0:
			// Written after the last sync: nothing in it was acknowledged.
			if readOnly {
				continue
			}
			if err := fs.Remove(path); err != nil {
				return nil, fmt.Errorf("cannot remove unsynced segment %s: %w", path, err)
			}
		case uint32(id) == wmSeg:
			st, err := fs.Stat(path)
			if err != nil {
				return nil, fmt.Errorf("cannot stat segment %s: %w", path, err)
			}
			size := uint64(st.Size())
			if size > wmSize && osFS && !readOnly {
				// Past the watermark: never acknowledged, perhaps torn.
				// Its bytes would be dead space forever (segments are
				// frozen), so they go now. If the truncation is lost in a
				// crash, the next Open does it again.
				if err := os.Truncate(path, int64(wmSize)); err != nil {
					return nil, fmt.Errorf("cannot truncate segment %s to its synced size: %w", path, err)
				}
			}
			// Shorter than the watermark: acknowledged data was lost (a
			// disk that lied about fsync, a file truncated by hand). The
			// entries past the end read as absent and Verify reports them
			// as missing.
			l.sizes[uint32(id)] = min(size, wmSize)
		default:
			st, err := fs.Stat(path)
			if err != nil {
				return nil, fmt.Errorf("cannot stat segment %s: %w", path, err)
			}
			l.sizes[uint32(id)] = uint64(st.Size())
		}
	}
	l.recovered.seg, l.recovered.size = wmSeg, wmSize
	return l, nil
}

// newSegment starts segment nextID. Called with mu held, or before l is
// shared: switching segments is rare (every maxSegmentSize bytes), and its
// fsyncs keep ids from being reused.
func (l *blockLog) newSegment() error {
	id := l.nextID
	var next [4]byte
	binary.BigEndian.PutUint32(next[:], id+1)
	if err := l.db.Set(keyNextSegment, next[:], pebble.Sync); err != nil {
		return fmt.Errorf("cannot record block log state: %w", err)
	}
	f, err := l.fs.OpenReadWrite(segmentName(l.dir, id), vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("cannot create segment %d: %w", id, err)
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		f.Close()
		return err
	}
	if l.direct != nil {
		df, ok, err := openDirect(segmentName(l.dir, id))
		if err != nil {
			f.Close()
			return err
		}
		if ok {
			if l.curDirect != nil {
				l.retired = append(l.retired, l.curDirect)
			}
			l.direct.start(df, id)
			l.curDirect = df
		} else if l.curDirect == nil {
			// Refused on the first segment: no direct I/O on this file
			// system.
			l.direct.stop()
			l.direct = nil
		} else {
			f.Close()
			return fmt.Errorf("cannot open segment %d for direct I/O", id)
		}
	}
	l.nextID, l.cur, l.curID, l.curSize = id+1, f, id, 0
	l.sizes[id] = 0
	l.files[id] = f
	l.dirty = append(l.dirty, f)
	return nil
}

// written waits until every write buffer queued so far is written: the
// data of every sealed segment is then in its file, for reads that bypass
// read (compaction). It returns the writer's error, if a write failed.
func (l *blockLog) written() error {
	l.mu.Lock()
	d := l.direct
	var ch <-chan struct{}
	if d != nil {
		ch = d.barrier()
	}
	l.mu.Unlock()
	if ch == nil {
		return nil
	}
	<-ch
	return d.failed()
}

// directOn reports whether the log writes with O_DIRECT (and its file
// system takes it).
func (l *blockLog) directOn() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.direct != nil
}

// sealed returns the size of every segment appends no longer go to.
func (l *blockLog) sealed() map[uint32]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[uint32]uint64, len(l.sizes))
	for id, size := range l.sizes {
		if id < l.curID {
			m[id] = size
		}
	}
	return m
}

// forget makes sealed segment seg unreadable, once the reads in flight in
// it are done, and returns its open file (nil if none) for the caller to
// close. The caller has moved every index entry out of it: after forget,
// an entry that still points into it reads as absent.
func (l *blockLog) forget(seg uint32) vfs.File {
	l.segs.Lock()
	defer l.segs.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.files[seg]
	delete(l.files, seg)
	delete(l.sizes, seg)
	if f != nil {
		l.dirty = slices.DeleteFunc(l.dirty, func(g vfs.File) bool { return g == f })
	}
	return f
}

// append writes data at the end of the log and returns where it is.
func (l *blockLog) append(data []byte) (loc, error) {
	l.writing.RLock()
	defer l.writing.RUnlock()
	l.mu.Lock()
	if l.curSize > 0 && l.curSize+uint64(len(data)) > maxSegmentSize {
		if err := l.newSegment(); err != nil {
			l.mu.Unlock()
			return loc{}, err
		}
	}
	at := loc{seg: l.curID, off: l.curSize, n: uint32(len(data))}
	f, direct := l.cur, l.direct != nil
	if direct {
		// The copy into the write buffer is made under mu: it is what
		// orders blocks in the buffer.
		if err := l.direct.write(data); err != nil {
			l.mu.Unlock()
			return loc{}, err
		}
	}
	l.curSize += uint64(len(data))
	l.sizes[at.seg] = l.curSize
	l.mu.Unlock()
	if direct {
		return at, nil
	}
	if _, err := f.WriteAt(data, int64(at.off)); err != nil {
		return loc{}, fmt.Errorf("cannot write segment %d: %w", at.seg, err)
	}
	end := at.off + uint64(at.n)
	if at.off/writebackBytes != end/writebackBytes {
		if _, err := f.SyncTo(int64(end)); err != nil {
			return loc{}, fmt.Errorf("cannot write back segment %d: %w", at.seg, err)
		}
	}
	return at, nil
}

// valid reports whether at lies inside what the log holds: recovery froze
// segments at their synced extent. (Index entries are written after their
// data, so an entry never points at a range still being written.)
func (l *blockLog) valid(at loc) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	size, ok := l.sizes[at.seg]
	if l.direct != nil && l.direct.lost(at.seg, at.off+uint64(at.n)) != nil {
		return false
	}
	return ok && at.off+uint64(at.n) <= size
}

// read returns a copy of the block at at.
func (l *blockLog) read(at loc) ([]byte, error) {
	f, err := l.file(at.seg)
	if err != nil {
		return nil, err
	}
	data := make([]byte, at.n)
	fromFile := len(data)
	l.mu.Lock()
	if d := l.direct; d != nil {
		if err := d.lost(at.seg, at.off+uint64(at.n)); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		fromFile = d.readAt(data, at.seg, at.off)
	}
	l.mu.Unlock()
	if fromFile == 0 {
		return data, nil
	}
	if _, err := f.ReadAt(data[:fromFile], int64(at.off)); err != nil {
		return nil, fmt.Errorf("cannot read segment %d at %d: %w", at.seg, at.off, err)
	}
	return data, nil
}

func (l *blockLog) file(id uint32) (vfs.File, error) {
	l.mu.Lock()
	f := l.files[id]
	l.mu.Unlock()
	if f != nil {
		return f, nil
	}
	f, err := l.fs.Open(segmentName(l.dir, id))
	if err != nil {
		return nil, fmt.Errorf("cannot open segment %d: %w", id, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.files[id]; g != nil {
		f.Close()
		return g, nil
	}
	l.files[id] = f
	return f, nil
}

// sync makes every append that returned before it durable (fsync unless
// noFsync) and records the watermark with the given pebble write options;
// the caller syncs pebble's WAL afterwards when it wants durability.
func (l *blockLog) sync(noFsync bool) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.writing.Lock()
	l.mu.Lock()
	dirty := l.dirty
	l.dirty = []vfs.File{l.cur}
	seg, size := l.curID, l.curSize
	d := l.direct
	var written <-chan struct{}
	retired := l.retired
	if d != nil {
		// Also without fsync: data still in a write buffer would not
		// survive even a process crash.
		written = d.flush()
		l.retired = nil
	}
	l.mu.Unlock()
	l.writing.Unlock()
	if written != nil {
		<-written
		for _, f := range retired {
			f.Close() // written: the writer is past their buffers
		}
		if err := d.failed(); err != nil {
			return err
		}
	}
	if !noFsync {
		for _, f := range dirty {
			if fsyncHook != nil {
				fsyncHook(f)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("cannot sync block log: %w", err)
			}
		}
	}
	wm := make([]byte, 12)
	binary.BigEndian.PutUint32(wm, seg)
	binary.BigEndian.PutUint64(wm[4:], size)
	if err := l.db.Set(keyWatermark, wm, pebble.NoSync); err != nil {
		return fmt.Errorf("cannot record block log watermark: %w", err)
	}
	return nil
}

func (l *blockLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.direct != nil {
		l.direct.stop() // writes what is queued; unsynced data is forgotten at open anyway
		for _, f := range append(l.retired, l.curDirect) {
			if f != nil {
				f.Close()
			}
		}
		l.direct, l.retired, l.curDirect = nil, nil, nil
	}
	var first error
	for id, f := range l.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
		delete(l.files, id)
	}
	return first
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("cannot open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}
