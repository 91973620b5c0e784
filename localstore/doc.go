// Package localstore is ingestd's embedded block store: the target an add
// writes to when no IPFS daemon is configured.
//
// # Layout
//
//   - Block data goes to an append-only log of segment files,
//     <dir>/blocks/<id>.log, up to 1 GiB each (blocklog.go). A block is
//     written once: copied into a 4 MiB aligned buffer that one writer
//     goroutine writes with O_DIRECT (direct.go), or, where the file
//     system refuses O_DIRECT, with one write into the page cache. A
//     segment is never written again once the log has moved to the next
//     one (sealed); it is deleted whole when compaction has copied its live
//     blocks away (compact.go).
//   - A pebble database (through go-ds-pebble) in <dir> holds the index,
//     /blocks/<base32 multihash> (boxo's blockstore key) → segment, offset,
//     length and the CRC-32C of the data (20 bytes; entries written before
//     the CRC existed have 16 and are checked by re-hashing), so a CIDv0
//     and a CIDv1 of one hash share one block; the log's own state under
//     /blocklog (next segment id, watermark, clean-shutdown marker, live
//     bytes per sealed segment); and everything else (the pinset, see
//     package pinner) under /meta, exposed by Datastore(), which cannot see
//     or overwrite blocks.
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
// Put does not fsync. Sync writes out the write buffers (the partial one
// padded to a page; the next write rewrites that page), fsyncs every
// segment written since the last Sync, records the log's watermark
// (segment, size) in pebble and fsyncs pebble's WAL, which makes every Put
// (and every Datastore write) that returned before Sync durable. An add
// calls Put for each block and Sync once, before it is acknowledged. With
// buffered writes, appends start the write-back of every 8 MiB
// (sync_file_range), so the disk works during the upload instead of after
// it.
//
// With Options.NoSync (ingestd's --no-fsync), Sync does all of that but
// fsync the segments: the blocks sit in the device's cache or the page
// cache, which survives a crash of the process (kill -9), not of the
// machine, as kubo's default flatfs (sync: false). The WAL is still
// fsynced, because pebble keeps a write without pebble.Sync in the
// process's memory, not the page cache, until a 32 KiB WAL block fills: a
// kill -9 right after Sync would otherwise lose the watermark and with it
// the add (TestDirectPowerLoss has that case). After a power loss under
// NoSync, blocks of the last adds may be lost; they read as absent, and
// Verify reports them missing.
//
// Open forgets everything past the watermark: later segment files are
// removed, and the watermark's segment is cut to its size (a torn last
// record goes with it) and frozen. Segment ids are fsynced before use and
// never reused, so an index entry written but never synced before a crash
// (pebble may keep the entry and lose the data) can never come to point at
// other data; it reads as absent, and after a crash (Close records a clean
// marker; its absence at Open means one) Open deletes such entries, so
// that the index again describes the log: an index entry whose data is not
// there is then always data lost after it was acknowledged (a disk that
// lied about an fsync, a file cut by hand), which Verify reports as
// missing. Open starts a new segment.
//
// # Out of space
//
// A write that fails (ENOSPC or any other error of the block log, an
// fsync, a pebble write, a pebble flush or compaction failing with a disk
// error) makes the store read-only until the next Open (nospace.go):
// every later write returns a *ReadOnlyError (ErrReadOnly, and
// syscall.ENOSPC on a full disk) before touching the disk, reads go on,
// and the change is logged once. Neither pebble's WAL writer nor the
// O_DIRECT writer can write again after an error, so only a reopen
// recovers. Close never flushes pebble (a flush on a full disk is
// retried forever, and panics after a WAL failure); Open checks for the
// room to replay pebble's WAL and opens read-only without it. See
// docs/reliability.md.
//
// # Verification
//
// Every block read is checked before it is returned: Get computes the
// CRC-32C of the bytes read (in hardware; it added 4–9% to the read of a
// 256 KiB block from the page cache, where re-hashing it with SHA-256 added
// 150–190%: BenchmarkReadCheck, BENCHMARKS.md) and compares it with the
// index entry's. A block that fails is never served: Get returns an error
// matching ErrCorrupt that names the CID, the segment and the offset.
// Compaction checks every block it copies the same way, and leaves a
// segment holding a corrupt block where it is. Verify reads every indexed
// block and re-hashes it with its multihash (the CID is the checksum: it
// also catches a block stored under a hash that is not its own, which Put
// does not check, trusting the ingest paths that hash), reporting corrupt
// and missing blocks with their locations; `ingestd verify` runs it on a
// stopped daemon's store and also walks every pin's DAG.
//
// # Garbage collection and compaction
//
// Collect (gc.go) marks the blocks the caller's roots reach, drops the
// index entries of all others in one synced batch, and records in that
// batch the live bytes of every sealed segment. A block the roots reach
// that cannot be read (corrupt, an I/O error) stops it before it removes
// anything: what that block links to cannot be known. It then compacts every
// sealed segment at most Options.CompactThreshold live (half, by default):
// its live blocks are copied to the end of the log, made durable, the
// index entries pointed at the copies in one synced batch, and the file
// deleted once no read that found the old place is still in flight.
// compact.go says why each step is crash-safe and why compaction runs
// while adds run without Hold. A compaction a crash interrupted is
// finished by the next Compact or Collect; a segment whose entries all
// moved before the crash is deleted by Open.
//
// # Pebble tuning
//
// The options in pebbleOptions were chosen, and measured, when blocks
// lived in pebble, and still fit an index of small entries: memtables of
// up to 8 MiB (pebble starts at 256 KiB and doubles; an index entry takes
// about 120 bytes there; 64 MiB left up to 8 memtables for the lookup
// before every Put to search, a third of the CPU of small-file adds, see
// memTableSize), 64 MiB tables at L0, bloom
// filters on every level (Put looks a block up before writing it, and
// nearly always misses), WAL bytes-per-sync 1 MiB, a 64 MiB block cache.
// Value separation, which kept blocks out of compactions, was dropped: no
// index entry comes near its 1 KiB minimum. None of it has been measured
// for the index alone, except the memtable size (issue 10, figure 1).
//
// # Tests
//
// Tests that need O_DIRECT run in a directory that takes it (directDir:
// os.TempDir, else <module root>/.cache/tmp); without one they skip, and
// fail when CI=true or INGESTD_REQUIRE_KUBO is set, so that they cannot
// silently stop running.
//
//   - TestKill9 SIGKILLs a child in the middle of unsynced Puts and checks
//     everything put before its Sync after reopening.
//   - TestMachineCrash runs on pebble's crash-simulating vfs and reopens a
//     clone holding only fsynced data (power loss, buffered path; it fails
//     if Sync does not fsync, and its control case shows the simulation
//     drops unsynced data); TestUnsyncedForgotten makes an index entry
//     durable without its data and checks it reads as absent.
//   - TestDirectPowerLoss does the same for the O_DIRECT path: a child
//     records each segment's size at each fsync and SIGKILLs itself; the
//     parent cuts every segment back to its last fsynced size (pebble
//     keeps everything, the worst case for the log), or tears the last
//     record, or the last acknowledged one, or flips a byte, then checks
//     that the store opens, that every acknowledged block reads back
//     except the damaged one, which is never served, and that Verify finds
//     exactly the damage. It has a NoSync control case and a NoSync kill
//     right after Sync.
//   - TestCompactionCrash kills a child at each step of a compaction, with
//     and without losing unsynced log data, and checks every live block,
//     that the compacted segment is gone after Open or the next Compact,
//     and that no space stays stranded after the next Collect.
//   - TestCompactWhileAdding races adds under Hold, unpins, Collects,
//     Compacts and Gets (run with -race in CI); TestGetDuringCompaction
//     holds a Get between finding a block and reading it while the
//     compaction moves it.
//   - TestGetCorrupt, TestGetLegacyEntry, TestCompactCorrupt,
//     TestCollectStopsOnCorrupt and TestVerify damage blocks and check
//     they are reported, not served, and that nothing a damaged block
//     links to is collected; TestCloseDuringCompaction closes the store
//     in the middle of a compaction.
//   - TestOutOfSpace fills a real tmpfs (it mounts one: root, see
//     mountTmpfs) with the O_DIRECT and the buffered log, and checks the
//     read-only state, that refused writes write nothing, one log line,
//     a read-only reopen on the full disk and a writable one with room;
//     TestFailedWriteIsReadOnly fails pebble's WAL with an injected ENOSPC.
//   - TestBlocksReadBackAtEveryStage reads blocks back from the write
//     buffers, after mid-page Syncs, across buffers and segments and after
//     reopening.
//
// # Limits
//
//   - One process per directory (pebble's LOCK file): `ingestd verify`
//     needs the daemon stopped.
//   - Memory: pebble's memtables (see above) and a 64 MiB block cache;
//     the log keeps one open file per segment read; Collect, the set of
//     marked multihashes (about 80 bytes per live block); compaction, the
//     index entries of the segment it compacts and two 8 MiB read buffers.
//   - Put writes data to the log and keeps no reference to it (Store is an
//     ingest.CopyingSink). Put does not check that data hashes to the CID.
//   - No method may run concurrently with Close.
//   - Collect and compaction read the whole index (a scan per compacted
//     segment); space is reclaimed per sealed segment, so up to 1 GiB of
//     the current segment and the threshold's share of every sealed one
//     may be dead at any time.
//   - A segment holding a corrupt live block is never compacted, and a
//     corrupt block is never repaired: Put of the same block finds it
//     indexed and writes nothing.
//   - Identity-hash CIDs are never stored; Has and Get answer them from the
//     CID itself.
package localstore
