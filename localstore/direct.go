package localstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Direct I/O for the block log.
//
// Buffered write(2) of block data cost more CPU than hashing it on the
// development VM (0.5 to 1.5 CPU-seconds per GiB in the kernel, page cache
// allocation and ext4's per-page work, and worse with several writers on
// one file), and stored adds were bound by it. With O_DIRECT the kernel
// hands the buffer to the device (0.1 to 0.2 CPU-seconds per GiB): appends
// copy blocks into 4 MiB aligned buffers, one writer goroutine writes each
// full buffer, and appends go on into the next while it does. The fsync at
// Sync remains (it flushes the device's cache and the file size).
//
// Used on the OS file system when it accepts O_DIRECT; otherwise (tmpfs,
// pebble's in-memory test FS) the log writes through the page cache as
// before.

const (
	directBufSize = 4 << 20
	directBufs    = 4 // one being filled, the others queued or being written
	directAlign   = 4096
)

// dbuf is a buffer of the segment range [start, start+n).
type dbuf struct {
	b     []byte // aligned, directBufSize
	f     *os.File
	seg   uint32
	start uint64 // aligned file offset of b[0]
	n     int
	// barrier, when not nil, is not data: the writer closes it once every
	// buffer queued before it is written.
	barrier chan struct{}
}

// directWriter is the O_DIRECT write side of the log. Its fields are
// guarded by blockLog.mu, except that the writer goroutine owns queued
// buffers until it returns them to free, and queued is guarded by qmu
// (taken after blockLog.mu, never before it).
type directWriter struct {
	cur  *dbuf // being filled; nil until the first segment
	free chan *dbuf
	work chan *dbuf
	// writeAt is (*os.File).WriteAt; tests replace it to fail a write.
	writeAt func(f *os.File, b []byte, off int64) (int, error)

	qmu    sync.Mutex
	queued []*dbuf // handed to the writer, not written yet, oldest first
	// err is the first write error; the log takes no appends after it, and
	// the bytes of the buffer that failed and of every later one (failSeg,
	// failOff onwards) may not be on disk, so reads of them fail too.
	err     error
	failSeg uint32
	failOff uint64
	done    chan struct{}
}

func newDirectWriter() *directWriter {
	d := &directWriter{
		free:    make(chan *dbuf, directBufs),
		work:    make(chan *dbuf, directBufs+1),
		done:    make(chan struct{}),
		writeAt: (*os.File).WriteAt,
	}
	for range directBufs {
		d.free <- &dbuf{b: alignedBuf(directBufSize)}
	}
	go d.run()
	return d
}

func alignedBuf(n int) []byte {
	raw := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return raw[off : off+n : off+n]
}

// openDirect opens a segment for direct writes; ok is false when the file
// system refuses O_DIRECT.
func openDirect(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if errors.Is(err, syscall.EINVAL) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cannot open segment %s for direct I/O: %w", path, err)
	}
	return f, true, nil
}

func (d *directWriter) run() {
	defer close(d.done)
	for b := range d.work {
		if b.barrier != nil {
			close(b.barrier)
			continue
		}
		end := (b.n + directAlign - 1) &^ (directAlign - 1)
		clear(b.b[b.n:end]) // padding up to the next page; rewritten by later data
		_, err := d.writeAt(b.f, b.b[:end], int64(b.start))
		d.qmu.Lock()
		if err != nil && d.err == nil {
			d.err = fmt.Errorf("cannot write block log segment %d at %d: %w", b.seg, b.start, err)
			d.failSeg, d.failOff = b.seg, b.start
		}
		d.queued = d.queued[1:]
		d.qmu.Unlock()
		d.free <- b
	}
}

func (d *directWriter) failed() error {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	return d.err
}

// lost returns the write error if [off, end) of segment seg lies in what a
// failed write may have left off the disk.
func (d *directWriter) lost(seg uint32, end uint64) error {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if d.err != nil && (seg > d.failSeg || seg == d.failSeg && end > d.failOff) {
		return d.err
	}
	return nil
}

// start makes segment seg, opened for direct I/O as f, from offset 0, the
// file that appends fill; the previous one's buffer is queued first.
// Called with blockLog.mu held.
func (d *directWriter) start(f *os.File, seg uint32) {
	if d.cur != nil {
		if d.cur.n > 0 {
			d.queue(d.cur)
		} else {
			d.free <- d.cur
		}
	}
	b := <-d.free
	b.f, b.seg, b.start, b.n = f, seg, 0, 0
	d.cur = b
}

func (d *directWriter) queue(b *dbuf) {
	d.qmu.Lock()
	d.queued = append(d.queued, b)
	d.qmu.Unlock()
	d.work <- b
}

// write copies data at the end of the current buffer, handing off every
// buffer it fills. Called with blockLog.mu held.
func (d *directWriter) write(data []byte) error {
	if err := d.failed(); err != nil {
		return err
	}
	for len(data) > 0 {
		k := copy(d.cur.b[d.cur.n:], data)
		d.cur.n += k
		data = data[k:]
		if d.cur.n == len(d.cur.b) {
			d.handOff(false)
		}
	}
	return nil
}

// handOff queues the current buffer for writing and starts the next one
// after it. With keepTail (a sync in the middle of a page) the next buffer
// starts at the current partial page, which the next write rewrites whole.
// Called with blockLog.mu held.
func (d *directWriter) handOff(keepTail bool) {
	old := d.cur
	d.queue(old)
	next := <-d.free // waits while two buffers are being written: backpressure
	next.f, next.seg, next.start, next.n = old.f, old.seg, old.start+uint64(old.n), 0
	if keepTail {
		tail := old.n % directAlign
		next.start -= uint64(tail)
		next.n = copy(next.b, old.b[old.n-tail:old.n])
	}
	d.cur = next
}

// flush hands off what the current buffer holds and returns a channel
// closed once everything queued so far is written. Called with
// blockLog.mu held; wait outside it.
func (d *directWriter) flush() <-chan struct{} {
	if d.cur != nil && d.cur.n > 0 {
		d.handOff(true)
	}
	return d.barrier()
}

// barrier returns a channel closed once every buffer queued so far is
// written. Called with blockLog.mu held; wait outside it.
func (d *directWriter) barrier() <-chan struct{} {
	ch := make(chan struct{})
	d.work <- &dbuf{barrier: ch}
	return ch
}

// readAt copies into p the bytes of [off, off+len(p)) of segment seg that
// are still in buffers, and returns how many leading bytes of p must come
// from the file instead: those are written, because buffers are written in
// order and leave queued only once written. Called with blockLog.mu held.
func (d *directWriter) readAt(p []byte, seg uint32, off uint64) int {
	fromFile := len(p)
	cover := func(b *dbuf) {
		if b.seg != seg {
			return
		}
		lo, hi := max(off, b.start), min(off+uint64(len(p)), b.start+uint64(b.n))
		if lo >= hi {
			return
		}
		copy(p[lo-off:hi-off], b.b[lo-b.start:hi-b.start])
		fromFile = min(fromFile, int(lo-off))
	}
	d.qmu.Lock()
	for _, b := range d.queued {
		cover(b)
	}
	d.qmu.Unlock()
	if d.cur != nil {
		cover(d.cur)
	}
	return fromFile
}

// stop writes what is queued and ends the writer goroutine.
func (d *directWriter) stop() {
	close(d.work)
	<-d.done
}
