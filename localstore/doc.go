// Package localstore is ingestd's embedded block store: the target an add
// writes to when no IPFS daemon is configured. It is one pebble database
// (through go-ds-pebble) holding
//
//   - blocks under /blocks/<base32 multihash>, exactly boxo's blockstore
//     keying, so Blockstore() (boxo's view, for CAR import and GC) and Put
//     see the same blocks, and a CIDv0 and a CIDv1 of one hash share one
//     block;
//   - everything else (the pinset, see package pinner) under /meta, exposed
//     by Datastore(), which cannot see or overwrite blocks.
//
// # Durability
//
// Put does not fsync. Sync fsyncs pebble's write-ahead log, which makes
// every Put (and every Datastore write) that returned before it durable:
// the WAL is one append-only sequence, and pebble syncs a WAL before it
// rotates to the next one. An add calls Put for each block and Sync once,
// before it is acknowledged.
//
// Sync is go-ds-pebble's Datastore.Sync, which ignores its key and calls
// DB.LogData(nil, pebble.Sync): an empty WAL record committed with
// Sync=true, i.e. a WAL fsync that waits for every record queued before it.
// go-ds-pebble's writes default to pebble.NoSync. Those two behaviours are
// exactly what we need, so there is no pebble code of our own here; Open
// still passes pebble.NoSync explicitly because Put's speed depends on it.
//
// Two tests check this: TestKill9 SIGKILLs a child process in the middle of
// unsynced Puts and checks that everything put before its Sync is intact
// after reopening (a process crash; the page cache survives it), and
// TestMachineCrash runs pebble on vfs.NewCrashableMem and reopens a clone
// holding only fsynced data (a power loss; it fails if Sync does not fsync).
//
// # Throughput
//
// Blocks are 256 KiB–1 MiB values under random (hash) keys. With pebble's
// and go-ds-pebble's defaults (4 MiB memtables, values stored inline in
// sstables) BenchmarkPut measured 83 MB/s over 4 GiB with a write
// amplification of 9: every compaction rewrites the blocks. The options in
// pebbleOptions change that:
//
//   - value separation: at flush, values of 1 KiB or more go to blob files
//     that compactions do not rewrite; sstables hold only keys and
//     references. A block is written twice (WAL, blob file) and that is all.
//     Pebble requires FormatValueSeparation for it; the database is created
//     at FormatNewest of pebble v2.1 (older pebble versions cannot open it).
//   - MaxBlobReferenceDepth 1000 instead of the 10 of pebble's own benchmark
//     tool: with random keys every blob file overlaps the whole key space,
//     the depth grows by about one per flush, and past the limit compactions
//     rewrite the values. Measured: at 10, 3.9 GiB rewritten while putting
//     4 GiB; at 100, 4.5 GiB while putting 16 GiB; at 1000, none (rewrites
//     start after ~1000 × 64 MiB). The limit is for the locality of value
//     scans, and nothing here scans values.
//   - 64 MiB memtables (up to 4 queued, so at most 256 MiB of unflushed
//     blocks in memory) and 64 MiB flush outputs, so blob files are ~60 MiB
//     instead of ~3 MiB (300 files per GiB stored). Fewer files alone took
//     4 GiB of Puts on tmpfs (no disk noise) from 640 to 810 MB/s.
//   - bloom filters on every level: Put checks Has first (as boxo's
//     blockstore does, so duplicate blocks cost a lookup, not a write), and
//     the filters answer the usual miss without reading the table. Has
//     seeks an iterator instead of calling go-ds-pebble's Has (a DB.Get,
//     which reads the whole value from its blob file): 2 µs instead of
//     45 µs per flushed block.
//   - WAL bytes-per-sync 1 MiB: background write-back of the WAL, so Sync
//     finds little left to write.
//
// Measured on the 2-core development VM, 256 KiB incompressible blocks,
// final Sync included: 470–760 MB/s for 1–4 GiB of Puts (serial or from 2
// goroutines alike), 235–380 MB/s sustained over 16 GiB (three runs), where
// the disk is the limit: a put byte is written twice (WAL, blob file) and
// the VM disk's own speed varied between runs (dd with fdatasync: 355 and
// 800 MB/s). A duplicate Put costs ~1 µs. Compression stays pebble's
// default (Snappy): on incompressible blocks it cost nothing measurable, and
// it helps on text.
//
// # Limits
//
//   - One process per directory (pebble's LOCK file).
//   - Memory: up to 256 MiB of memtables plus a 64 MiB block cache.
//   - Put copies data into pebble's batch; the caller keeps its slice.
//   - No method may run concurrently with Close.
//   - A failed WAL write is fatal inside pebble (it calls its logger's
//     Fatalf, which exits the process): pebble cannot continue with a WAL
//     in an unknown state.
//   - Identity-hash CIDs are never stored; Has and Get answer them from the
//     CID itself.
package localstore
