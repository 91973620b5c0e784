// Package localstore is ingestd's embedded block store: the target an add
// writes to when no IPFS daemon is configured.
//
// # Layout
//
//   - Block data goes to an append-only log of segment files,
//     <dir>/blocks/<id>.log, up to 1 GiB each (blocklog.go). A block is
//     written once: copied into a 4 MiB aligned buffer that one writer
//     goroutine writes with O_DIRECT (direct.go), or, where the file
//     system refuses O_DIRECT, with one write into the page cache.
//   - A pebble database (through go-ds-pebble) in <dir> holds the index,
//     /blocks/<base32 multihash> (boxo's blockstore key) → segment, offset,
//     length (16 bytes), so a CIDv0 and a CIDv1 of one hash share one
//     block; the log's own state under /blocklog; and everything else (the
//     pinset, see package pinner) under /meta, exposed by Datastore(),
//     which cannot see or overwrite blocks.
//
// Why not blocks inside pebble: it was the first design, and it capped
// adds at 470–760 MB/s on the development VM (BenchmarkPut) with pebble's
// write path (WAL, memtable, blob files with value separation) costing as
// much CPU as hashing. (Those figures, and the first ones of the log,
// came from a benchmark that re-sent one file, see below; the log's
// advantage held when measured again, the absolute numbers did not.)
// Storing new blocks on every add, /add over HTTP now stores at 0.94–1.02
// GB/s with fsync and CAR imports at 1.0–1.1 GB/s; see BENCHMARKS.md.
//
// Why direct I/O: once the benchmarks stored new blocks on every add (they
// had re-sent one file, which the has-before-put check turned into
// lookups), buffered pwrite(2) showed up at 1.5 CPU-seconds per GiB on the
// development VM, 3 with writers on several cores: page cache allocation and
// ext4's per-page work. O_DIRECT costs 0.1–0.2; stored adds went from
// 0.39–0.61 to about 1 GB/s. Blocks just put are read back from the
// buffers until written.
//
// # Durability
//
// Put does not fsync. Sync fsyncs every segment written since the last
// Sync, records the log's watermark (segment, size) in pebble and fsyncs
// pebble's WAL, which makes every Put (and every Datastore write) that
// returned before Sync durable. An add calls Put for each block and Sync
// once, before it is acknowledged. With direct I/O, Sync first writes the
// partial buffer (padded to a page; the next write rewrites that page) and
// waits for the writer, also with NoSync, since data in a buffer would not
// survive even a process crash. With buffered writes, appends start the
// write-back of every 8 MiB (sync_file_range), so the disk works during the
// upload instead of after it.
//
// Open forgets everything past the watermark: later segment files are
// removed and the watermark's segment is frozen at its size, so an index
// entry written but never synced before a crash (pebble may flush it before
// the data) reads as absent; segment ids are fsynced before use and never
// reused, so such an entry can never come to point at other data. Open
// starts a new segment.
//
// With Options.NoSync, Sync records the watermark without any fsync: data
// sits in the device's cache or the page cache and the WAL in the page
// cache, which survives a crash of the process (kill -9) but not of the
// machine, as kubo's default flatfs (sync: false).
//
// Tests: TestKill9 SIGKILLs a child in the middle of unsynced Puts and
// checks everything put before its Sync after reopening; TestMachineCrash
// runs on pebble's crash-simulating vfs and reopens a clone holding only
// fsynced data (power loss; it fails if Sync does not fsync, and its control
// case shows the simulation drops unsynced data); TestUnsyncedForgotten
// makes an index entry durable without its data and checks it reads as
// absent, before and after new Puts; TestBlocksReadBackAtEveryStage reads
// blocks back from the write buffers, after mid-page Syncs, across
// buffers and segments and after reopening. TestMachineCrash runs the
// buffered path (pebble's FS has no O_DIRECT); the others run the direct
// one on the test machine's disk.
//
// # Pebble tuning
//
// Index entries are small; the options in pebbleOptions were chosen when
// blocks lived in pebble and still fit: 64 MiB memtables, bloom filters on
// every level (Put looks a block up before writing it, and nearly always
// misses), WAL bytes-per-sync 1 MiB, value separation for values of 1 KiB
// and more (pin records stay inline).
//
// # Limits
//
//   - One process per directory (pebble's LOCK file).
//   - Memory: pebble's memtables (up to 4 × 64 MiB, index entries only now)
//     and a 64 MiB block cache; the log keeps one open file per segment
//     read.
//   - Put writes data to the log and keeps no reference to it (Store is an
//     ingest.CopyingSink).
//   - No method may run concurrently with Close.
//   - Deleting blocks (GC) is not implemented: segments only grow.
//   - Identity-hash CIDs are never stored; Has and Get answer them from the
//     CID itself.
package localstore
