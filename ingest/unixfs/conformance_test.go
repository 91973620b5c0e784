package unixfs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/internal/kubotest"
)

// The conformance suite checks ingestd's core promise: for the same options,
// POST /add builds the same DAG as kubo's `ipfs add`. Each case writes a tree
// to disk, asks the pinned kubo for its CIDs (the oracle), sends the same
// tree through the multipart body IPFS Cluster's Go client would send and
// through unixfs.Import, and compares every (name, CID) pair. When they
// differ, ingestd is wrong.

// fsEntry is one thing a case writes into its tree.
type fsEntry struct {
	path    string // slash-separated, relative to the tree
	size    int    // pseudo-random content of this many bytes (files)
	text    string // content, when set (files)
	dir     bool
	symlink string      // symlink target, when set
	mode    os.FileMode // chmod'ed after writing; 0 keeps the default
	mtime   time.Time   // set after everything is written; zero keeps it
}

func file(p string, size int) fsEntry       { return fsEntry{path: p, size: size} }
func textFile(p, text string) fsEntry       { return fsEntry{path: p, text: text} }
func dirEntry(p string) fsEntry             { return fsEntry{path: p, dir: true} }
func symlinkEntry(p, target string) fsEntry { return fsEntry{path: p, symlink: target} }

func (e fsEntry) withStat(mode os.FileMode, mtime time.Time) fsEntry {
	e.mode, e.mtime = mode, mtime
	return e
}

// conformanceCase is one `ipfs add` invocation and its ingestd equivalent.
type conformanceCase struct {
	name    string
	profile string   // kubo repository profile; ApplyProfile on our side
	flags   []string // kubo CLI flags; optionsFor turns them into Options
	tree    []fsEntry
	paths   []string // top-level paths added, relative to the tree
	big     bool     // skipped with -short
	// stored makes the oracle a real `ipfs add --pin=false` instead of
	// --only-hash, where kubo 0.42's --only-hash is not what a real add
	// does (ingestd stores blocks, so the real add is what to match):
	//   - --only-hash gives the top-level directory an MFS root without
	//     the per-request directory options (core/coreapi/unixfs.go:
	//     mfs.NewRoot(…, emptyDirNode, nil, nil)), so --max-directory-links
	//     and --max-hamt-fanout do not apply to it; a real add applies
	//     them (coreunix.Adder.mfsRoot: mfs.NewEmptyRoot with mkdirOpts).
	//   - with --preserve-mode or --preserve-mtime on a directory,
	//     --only-hash fails with "ipld: could not find <cid>": the root it
	//     makes for the directory's mode and mtime writes to the null
	//     blockstore and is read back (coreunix.Adder.addDir).
	stored bool
	// rootType, when set, is the UnixFS type the root must have; it shows
	// that a case meant to cross the HAMT threshold does (our root equals
	// kubo's, so kubo's root has that type too).
	rootType string
}

// Values of conformanceCase.rootType: pb.Data_DataType names.
var (
	dirType  = pb.Data_Directory.String()
	hamtType = pb.Data_HAMTShard.String()
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Mode/mtime fixtures: with and without nanoseconds, and before the epoch.
var (
	mtime1 = time.Unix(1700000000, 123456789)
	mtime2 = time.Unix(1600000000, 0)
	mtime3 = time.Unix(-1000, 500000000)
)

func conformanceCases() []conformanceCase {
	one := func(name string, size int, flags ...string) conformanceCase {
		return conformanceCase{name: name, flags: flags, tree: []fsEntry{file("f", size)}, paths: []string{"f"}}
	}
	// mixed is a small directory with a single-chunk file (its root is a
	// leaf) and a multi-chunk file (its root is a file node).
	mixed := []fsEntry{file("d/small", 100), file("d/multi", 10*kib+3), file("d/sub/empty", 0)}
	mixedCase := func(name string, flags ...string) conformanceCase {
		return conformanceCase{name: name, flags: append([]string{"--chunker=size-1024"}, flags...), tree: mixed, paths: []string{"d"}}
	}
	// nested: three levels, empty files and directories, names that need
	// URL escaping and kubo's output escaping.
	nested := []fsEntry{
		textFile("top/a.txt", "aaa\n"),
		file("top/b.bin", 5000),
		file("top/empty", 0),
		dirEntry("top/emptydir"),
		textFile("top/a b+c%d&e=f.txt", "odd name\n"),
		textFile("top/tab\there ü.txt", "unicode\n"),
		file("top/l1/x", 1),
		file("top/l1/y", 3000),
		dirEntry("top/l1/emptydir"),
		file("top/l1/l2/z", 2048),
		file("top/l1/l2/empty", 0),
		dirEntry("top/l1/l2/l3"),
		textFile("top/l1/l2/l3/deep.txt", "deep\n"),
	}
	// hamtDir is n small files in h/ named with nameLen digits, so that
	// every link has the same size estimate; see the HAMT cases below.
	hamtDir := func(n, nameLen int) []fsEntry {
		es := make([]fsEntry, n)
		for i := range es {
			es[i] = textFile(fmt.Sprintf("h/%0*d", nameLen, i), strconv.Itoa(i)+"\n")
		}
		return es
	}
	manyFiles := func(dir string, n int) []fsEntry {
		es := make([]fsEntry, n)
		for i := range es {
			es[i] = textFile(fmt.Sprintf("%s/f%03d", dir, i), strconv.Itoa(i)+"\n")
		}
		return es
	}
	stat := []fsEntry{
		file("s/rw", 10).withStat(0o600, mtime1),
		file("s/exec", 3000).withStat(0o755, mtime2),
		file("s/empty", 0).withStat(0o640, mtime3),
		file("s/sticky", 5).withStat(0o644|os.ModeSetuid|os.ModeSticky, mtime1),
		dirEntry("s/sub").withStat(0o750, mtime2),
		file("s/sub/x", 1).withStat(0o444, mtime1),
		dirEntry("s/sub/emptydir").withStat(0o700, mtime3),
		symlinkEntry("s/link", "rw"),
		dirEntry("s").withStat(0o711, mtime1),
	}

	cases := []conformanceCase{
		// File sizes around chunk and node boundaries.
		one("empty file", 0),
		one("1 byte", 1),
		one("one chunk", 1024, "--chunker=size-1024"),
		one("one chunk plus 1", 1025, "--chunker=size-1024"),
		one("174 chunks", 174*1024, "--chunker=size-1024"),
		one("175 chunks", 175*1024, "--chunker=size-1024"),
		one("175 chunks last partial", 174*1024+1, "--chunker=size-1024"),
		one("1024 chunks links 174", 1024*1024, "--chunker=size-1024"),
		one("1025 chunks links 174", 1025*1024, "--chunker=size-1024"),
		one("1024 chunks links 1024", 1024*1024, "--chunker=size-1024", "--max-file-links=1024"),
		// One link per node: only the trickle layout can build it (the
		// balanced one is refused, as kubo never finishes it).
		one("trickle links 1", 10*1024, "--chunker=size-1024", "--trickle", "--max-file-links=1"),
		one("1025 chunks links 1024", 1025*1024, "--chunker=size-1024", "--max-file-links=1024"),
		one("1025 chunks links 1024 v1", 1025*1024, "--chunker=size-1024", "--max-file-links=1024", "--cid-version=1"),
		one("max-file-links 3", 40*1024+7, "--chunker=size-1024", "--max-file-links=3"),
		one("default chunker 3 chunks", 512*kib+1),
		{name: "100 MiB default", tree: []fsEntry{file("big", 100*mib)}, paths: []string{"big"}, big: true},
		{name: "100 MiB unixfs-v1-2025", profile: unixfs.ProfileV1, tree: []fsEntry{file("big", 100*mib)}, paths: []string{"big"}, big: true},

		// Chunkers.
		one("size-1000", 10000, "--chunker=size-1000"),
		one("size-1 tiny", 10, "--chunker=size-1"),
		one("rabin default", 4*mib, "--chunker=rabin"),
		one("rabin-N", 256*kib, "--chunker=rabin-8192"),
		one("rabin-min-avg-max", 256*kib, "--chunker=rabin-2048-8192-32768"),
		one("rabin-min-avg-max labels", 256*kib, "--chunker=rabin-min:2048-avg:8192-max:32768"),
		one("rabin small file", 1000, "--chunker=rabin"),
		one("buzhash", 4*mib, "--chunker=buzhash"),
		one("buzhash small file", 100*kib, "--chunker=buzhash"),

		// Layouts: trickle deep enough for its repeated levels.
		one("balanced 2000 chunks", 2000*256, "--chunker=size-256"),
		one("trickle 2000 chunks", 2000*256, "--chunker=size-256", "--trickle"),
		one("trickle 2000 chunks v1", 2000*256+17, "--chunker=size-256", "--trickle", "--cid-version=1"),
		one("trickle max-file-links 4", 500*256, "--chunker=size-256", "--trickle", "--max-file-links=4"),
		one("trickle one chunk", 100, "--chunker=size-256", "--trickle"),
		one("trickle empty", 0, "--trickle"),
		one("trickle raw leaves v0", 3000*256, "--chunker=size-256", "--trickle", "--raw-leaves"),

		// Leaf types.
		mixedCase("v0 dag-pb leaves"),
		mixedCase("v0 raw leaves", "--raw-leaves"),
		mixedCase("v1 raw leaves", "--cid-version=1"),
		mixedCase("v1 dag-pb leaves", "--cid-version=1", "--raw-leaves=false"),

		// Hash functions (all imply CIDv1).
		mixedCase("sha2-512", "--hash=sha2-512"),
		mixedCase("blake2b-256", "--hash=blake2b-256"),
		mixedCase("blake3", "--hash=blake3"),
		mixedCase("sha3-256", "--hash=sha3-256"),
		mixedCase("keccak-256", "--hash=keccak-256"),
		mixedCase("blake3 dag-pb leaves", "--hash=blake3", "--raw-leaves=false"),
		mixedCase("blake3 inline", "--hash=blake3", "--inline"),

		// Inlining: small leaves and small directories get identity CIDs.
		// A dag-pb leaf of n < 120 bytes is an n+8 byte block, a raw leaf
		// n bytes: the files just fit the limit, or just miss it.
		{name: "inline", flags: []string{"--inline"}, tree: inlineTree(24, 25, 32, 33), paths: []string{"i"}},
		{name: "inline v1", flags: []string{"--inline", "--cid-version=1"}, tree: inlineTree(24, 25, 32, 33), paths: []string{"i"}},
		{name: "inline-limit 100", flags: []string{"--inline", "--inline-limit=100"}, tree: inlineTree(92, 93, 100, 101), paths: []string{"i"}},
		{name: "inline-limit 100 v1", flags: []string{"--inline", "--inline-limit=100", "--cid-version=1"}, tree: inlineTree(92, 93, 100, 101), paths: []string{"i"}},
		{name: "inline-limit 8 single file", flags: []string{"--inline", "--inline-limit=8", "--cid-version=1"}, tree: []fsEntry{textFile("f", "12345678")}, paths: []string{"f"}},
		{name: "inline-limit without inline", flags: []string{"--inline-limit=100"}, tree: []fsEntry{textFile("i/a", "a")}, paths: []string{"i"}},

		// Directory shapes.
		{name: "nested", tree: nested, paths: []string{"top"}},
		{name: "nested v1", flags: []string{"--cid-version=1"}, tree: nested, paths: []string{"top"}},
		{name: "nested trickle size-1024", flags: []string{"--trickle", "--chunker=size-1024"}, tree: nested, paths: []string{"top"}},
		{name: "empty directory", tree: []fsEntry{dirEntry("e")}, paths: []string{"e"}},

		// --max-directory-links turns a basic directory into a HAMT by
		// link count, at the top and below it.
		{name: "max-directory-links at limit", flags: []string{"--max-directory-links=5"}, tree: manyFiles("m", 5), paths: []string{"m"}, stored: true, rootType: dirType},
		{name: "max-directory-links over limit", flags: []string{"--max-directory-links=5"}, tree: manyFiles("m", 6), paths: []string{"m"}, stored: true, rootType: hamtType},
		{name: "max-directory-links nested", flags: []string{"--max-directory-links=5"}, tree: append(manyFiles("m/sub", 6), manyFiles("m/sub2", 5)...), paths: []string{"m"}, stored: true},
		{name: "max-hamt-fanout 8", flags: []string{"--max-directory-links=4", "--max-hamt-fanout=8"}, tree: append(manyFiles("m", 40), manyFiles("m/sub", 30)...), paths: []string{"m"}, stored: true, rootType: hamtType},
		{name: "max-hamt-fanout 64 v1", flags: []string{"--max-directory-links=4", "--max-hamt-fanout=64", "--cid-version=1"}, tree: manyFiles("m", 100), paths: []string{"m"}, stored: true, rootType: hamtType},
		{name: "max-hamt-fanout without HAMT", flags: []string{"--max-hamt-fanout=8"}, tree: manyFiles("m", 20), paths: []string{"m"}, stored: true, rootType: dirType},

		// The HAMT threshold (256 KiB, a directory becomes a HAMT when its
		// estimate is strictly above it; boxo ipld/unixfs/io/directory.go).
		//
		// "links" estimation (default): each link counts
		// len(name) + len(CID bytes). CIDv0 is 34 bytes, so 222-byte names
		// make every link 256: 1024 files estimate exactly 262144 and stay
		// basic, 1025 estimate 262400 and become a HAMT.
		{name: "HAMT links at threshold", tree: hamtDir(1024, 222), paths: []string{"h"}, rootType: dirType},
		{name: "HAMT links above threshold", tree: hamtDir(1025, 222), paths: []string{"h"}, rootType: hamtType},
		// "block" estimation (unixfs-v1-2025): the estimate is the serialized
		// dag-pb block: the Data field of a directory without mode or mtime
		// is 4 bytes (dataFieldSerializedSize), and each link
		// (linkSerializedSize) is 1+1+36 (CIDv1 raw) + 1+2+len(name) +
		// 1+1 (Tsize < 128) inside a 1+2 byte wrapper. 209-byte names make
		// a link 255 bytes: 4 + 1028*255 = 262144 stays basic, 1029 files
		// make 262399 and a HAMT.
		{name: "HAMT block at threshold", profile: unixfs.ProfileV1, tree: hamtDir(1028, 209), paths: []string{"h"}, rootType: dirType},
		{name: "HAMT block above threshold", profile: unixfs.ProfileV1, tree: hamtDir(1029, 209), paths: []string{"h"}, rootType: hamtType},
		// The same 1028 files are far below the threshold with "links"
		// estimation (1028 * (209+34) = 249804): the modes really differ.
		{name: "HAMT links same files", tree: hamtDir(1028, 209), paths: []string{"h"}, rootType: dirType},
		{name: "HAMT block nested", profile: unixfs.ProfileV1, tree: append(hamtDir(1029, 209), textFile("x", "x")), paths: []string{"h", "x"}, flags: []string{"-w"}},
		// Block estimation counts Tsize: with 1027 files (4 + 1027*255 =
		// 261889) a 209-byte-named subdirectory link is 255 bytes while its
		// Tsize is below 128 and 256 from 128 on. kubo links the empty
		// subdirectory first and replaces the link when it is flushed.
		{name: "HAMT block subdir small tsize", profile: unixfs.ProfileV1, tree: append(hamtDir(1027, 209), file("h/"+strings.Repeat("s", 209)+"/f", 10)), paths: []string{"h"}, rootType: dirType},
		{name: "HAMT block subdir large tsize", profile: unixfs.ProfileV1, tree: append(hamtDir(1027, 209), file("h/"+strings.Repeat("s", 209)+"/f", 200)), paths: []string{"h"}, rootType: hamtType},

		// Symlinks are added as symlinks, dangling ones too.
		{name: "symlinks", tree: []fsEntry{textFile("l/target.txt", "t\n"), symlinkEntry("l/link", "target.txt"), symlinkEntry("l/dangling", "../nowhere/at/all"), symlinkEntry("l/sub/up", "../target.txt"), symlinkEntry("l/abs", "/etc/hostname")}, paths: []string{"l"}},
		{name: "symlinks v1", flags: []string{"--cid-version=1"}, tree: []fsEntry{textFile("l/target.txt", "t\n"), symlinkEntry("l/link", "target.txt"), symlinkEntry("l/dangling", "nowhere")}, paths: []string{"l"}},

		{name: "symlink at top level", tree: []fsEntry{textFile("t.txt", "t\n"), symlinkEntry("link", "t.txt")}, paths: []string{"link"}},
		{name: "dangling symlink at top level mtime", flags: []string{"--preserve-mtime"}, tree: []fsEntry{symlinkEntry("link", "nowhere")}, paths: []string{"link"}},

		// Wrapping.
		{name: "wrap one file", flags: []string{"-w"}, tree: []fsEntry{textFile("hello.txt", "hello world\n")}, paths: []string{"hello.txt"}},
		{name: "wrap two files", flags: []string{"-w"}, tree: []fsEntry{textFile("hello.txt", "hello world\n"), file("dir1/a.bin", 3000)}, paths: []string{"hello.txt", "dir1/a.bin"}},
		{name: "wrap file and directory", flags: []string{"-w", "--cid-version=1"}, tree: []fsEntry{textFile("hello.txt", "hello world\n"), file("dir1/a.bin", 3000), dirEntry("dir1/e")}, paths: []string{"hello.txt", "dir1"}},
		// Without -w every path is its own add. kubo's CLI sorts its
		// arguments, so the paths are given sorted for the last root to
		// be the same.
		{name: "two paths unwrapped", tree: []fsEntry{textFile("hello.txt", "hello world\n"), file("dir1/a.bin", 3000)}, paths: []string{"dir1", "hello.txt"}},

		// Hidden files: kubo needs --hidden, the ctl sends them with -H.
		{name: "hidden", flags: []string{"--hidden"}, tree: []fsEntry{textFile("d/.hidden", "h\n"), textFile("d/visible", "v\n"), textFile("d/.hdir/x", "x\n")}, paths: []string{"d"}},

		// Mode and mtime.
		{name: "preserve mode and mtime", stored: true, flags: []string{"--preserve-mode", "--preserve-mtime"}, tree: stat, paths: []string{"s"}},
		{name: "preserve mode", stored: true, flags: []string{"--preserve-mode"}, tree: stat, paths: []string{"s"}},
		{name: "preserve mtime", stored: true, flags: []string{"--preserve-mtime"}, tree: stat, paths: []string{"s"}},
		{name: "preserve v1 size-1024", stored: true, flags: []string{"--preserve-mode", "--preserve-mtime", "--cid-version=1", "--chunker=size-1024"}, tree: stat, paths: []string{"s"}},
		{name: "preserve trickle size-1024", stored: true, flags: []string{"--preserve-mode", "--preserve-mtime", "--trickle", "--chunker=size-1024"}, tree: stat, paths: []string{"s"}},
		{name: "preserve single small file", flags: []string{"--preserve-mode", "--preserve-mtime"}, tree: []fsEntry{file("f", 10).withStat(0o600, mtime1)}, paths: []string{"f"}},
		{name: "preserve single empty file", flags: []string{"--preserve-mode", "--preserve-mtime"}, tree: []fsEntry{file("f", 0).withStat(0o600, mtime2)}, paths: []string{"f"}},
		{name: "preserve single multi-chunk file", flags: []string{"--preserve-mode", "--preserve-mtime", "--chunker=size-1024"}, tree: []fsEntry{file("f", 5000).withStat(0o755, mtime3)}, paths: []string{"f"}},
		{name: "preserve wrapped", flags: []string{"--preserve-mode", "--preserve-mtime", "-w"}, tree: []fsEntry{file("f", 10).withStat(0o600, mtime1), dirEntry("d").withStat(0o700, mtime2)}, paths: []string{"f", "d"}},
		// Block estimation counts the directory's mode and mtime: here
		// the Data field is 20 bytes instead of 4 (mode 0755: 3, mtime
		// with nanoseconds: 13), so 1028 files (at the threshold without
		// them) make 20 + 1028*255 = 262160, a HAMT. File links keep 255
		// bytes: CIDv1 dag-pb is 36 bytes like CIDv1 raw.
		{name: "preserve HAMT block", profile: unixfs.ProfileV1, stored: true, flags: []string{"--preserve-mode", "--preserve-mtime", "--raw-leaves=false"}, tree: append(hamtDir(1028, 209), dirEntry("h").withStat(0o755, mtime1)), paths: []string{"h"}, rootType: hamtType},
		{name: "preserve HAMT block below", profile: unixfs.ProfileV1, stored: true, flags: []string{"--preserve-mode", "--preserve-mtime", "--raw-leaves=false"}, tree: append(hamtDir(1027, 209), dirEntry("h").withStat(0o755, mtime1)), paths: []string{"h"}, rootType: dirType},

		// The profile on small inputs.
		{name: "unixfs-v1-2025 nested", profile: unixfs.ProfileV1, tree: nested, paths: []string{"top"}},
		{name: "unixfs-v1-2025 with flags", profile: unixfs.ProfileV1, flags: []string{"--chunker=size-1024", "--trickle"}, tree: nested, paths: []string{"top"}},
		{name: "unixfs-v0-2015 nested", profile: unixfs.ProfileV0, tree: nested, paths: []string{"top"}},
	}
	return cases
}

// inlineTree is a directory of files of the given sizes, a one-file
// subdirectory and an empty directory, for the --inline cases.
func inlineTree(sizes ...int) []fsEntry {
	es := []fsEntry{textFile("i/a", "a"), textFile("i/sub/b", "bb"), dirEntry("i/emptydir")}
	for _, n := range sizes {
		es = append(es, file(fmt.Sprintf("i/f%d", n), n))
	}
	return es
}

// optionsFor sets Options from kubo CLI flags the way the REST layer sets
// them from the /add query (restapi.ParseAddParams): profile first, then the
// explicit options, then Resolve.
func optionsFor(t *testing.T, profile string, flags []string) unixfs.Options {
	t.Helper()
	o := unixfs.DefaultOptions()
	if profile != "" {
		if err := o.ApplyProfile(profile); err != nil {
			t.Fatal(err)
		}
	}
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("cannot parse flag value %q: %v", s, err)
		}
		return n
	}
	for _, f := range flags {
		name, val, hasVal := strings.Cut(strings.TrimLeft(f, "-"), "=")
		switch name {
		case "hidden":
			// The body always carries hidden files, as ipfs-cluster-ctl -H.
		case "w":
			o.Wrap = true
		case "chunker":
			o.Chunker = val
		case "raw-leaves":
			o.RawLeaves, o.RawLeavesSet = !hasVal || val == "true", true
		case "cid-version":
			o.CidVersion = atoi(val)
		case "hash":
			code, ok := mh.Names[val]
			if !ok {
				t.Fatalf("unknown hash %q", val)
			}
			o.HashFunc = code
		case "trickle":
			o.Trickle = true
		case "max-file-links":
			o.MaxFileLinks = atoi(val)
		case "max-directory-links":
			o.MaxDirectoryLinks = atoi(val)
		case "max-hamt-fanout":
			o.MaxHAMTFanout = atoi(val)
		case "inline":
			o.Inline = true
		case "inline-limit":
			o.InlineLimit = atoi(val)
		case "preserve-mode":
			o.PreserveMode = true
		case "preserve-mtime":
			o.PreserveMtime = true
		default:
			t.Fatalf("optionsFor: unknown flag %q", f)
		}
	}
	// Progress objects must not disturb the outputs that carry CIDs.
	o.Progress = true
	if err := o.Resolve(); err != nil {
		t.Fatalf("cannot resolve options for %q: %v", flags, err)
	}
	return o
}

// writeTree creates the entries of a case under root. Modes and mtimes are
// set after all content is written, so that writing a child does not move
// its directory's mtime afterwards.
func writeTree(t *testing.T, root string, entries []fsEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(root, filepath.FromSlash(e.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.dir:
			err = os.MkdirAll(p, 0o755)
		case e.symlink != "":
			err = os.Symlink(e.symlink, p)
		case e.text != "":
			err = os.WriteFile(p, []byte(e.text), 0o644)
		default:
			err = writeRandom(p, e.path, e.size)
		}
		if err != nil {
			t.Fatalf("cannot write %s: %v", e.path, err)
		}
	}
	for _, e := range slices.Backward(entries) {
		p := filepath.Join(root, filepath.FromSlash(e.path))
		if e.mode != 0 {
			if err := os.Chmod(p, e.mode); err != nil {
				t.Fatal(err)
			}
		}
		if !e.mtime.IsZero() {
			if err := os.Chtimes(p, e.mtime, e.mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// writeRandom writes size pseudo-random bytes seeded by name, so that equal
// sizes under different names differ and every run writes the same data.
func writeRandom(p, name string, size int) error {
	var seed [32]byte
	copy(seed[:], name)
	rng := rand.NewChaCha8(seed)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rng, int64(size)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeClusterBody writes the multipart body that the IPFS Cluster Go client
// (ipfs-cluster-ctl add -r -H) sends for paths, which are relative to root:
// boxo's files.NewMultiFileReader(form=true) over a slice directory of
// files.NewSerialFile entries named path.Base(p). That is, depth first,
// directory entries in name order (os.ReadDir), URL-escaped filenames,
// "file?mode=…&mtime=…&mtime-nsecs=…" form names, and Abspath-Encoded on
// regular files (spec §4.2).
func writeClusterBody(mw *multipart.Writer, root string, paths []string) error {
	for _, p := range paths {
		if err := writeClusterPart(mw, filepath.Join(root, filepath.FromSlash(p)), path.Base(p)); err != nil {
			return err
		}
	}
	return mw.Close()
}

func writeClusterPart(mw *multipart.Writer, local, name string) error {
	fi, err := os.Lstat(local)
	if err != nil {
		return err
	}
	mode := fi.Mode()
	if mode&os.ModeSymlink != 0 {
		mode = os.ModeSymlink | os.ModePerm // files.Symlink.Mode
	}
	params := url.Values{}
	if mode != 0 {
		params.Add("mode", "0"+strconv.FormatUint(uint64(mode), 8))
	}
	if mt := fi.ModTime(); !mt.IsZero() {
		params.Add("mtime", strconv.FormatInt(mt.Unix(), 10))
		if n := mt.Nanosecond(); n > 0 {
			params.Add("mtime-nsecs", strconv.FormatInt(int64(n), 10))
		}
	}
	h := textproto.MIMEHeader{}
	formName := "file"
	if len(params) > 0 {
		formName += "?" + params.Encode()
	}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, formName, url.QueryEscape(name)))
	switch {
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(local)
		if err != nil {
			return err
		}
		h.Set("Content-Type", "application/symlink")
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, target)
		return err
	case mode.IsDir():
		h.Set("Content-Type", "application/x-directory")
		if _, err := mw.CreatePart(h); err != nil {
			return err
		}
		entries, err := os.ReadDir(local)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := writeClusterPart(mw, filepath.Join(local, e.Name()), name+"/"+e.Name()); err != nil {
				return err
			}
		}
		return nil
	default:
		abs, err := filepath.Abs(local)
		if err != nil {
			return err
		}
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Abspath-Encoded", url.QueryEscape(abs))
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
}

// TestClusterBodyMatchesBoxo checks writeClusterBody against the code the
// IPFS Cluster Go client runs: boxo's MultiFileReader over a slice
// directory of serial files (hidden files included, as with -H). Parts
// must have the same headers and bodies; only the boundary differs.
func TestClusterBodyMatchesBoxo(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeTree(t, root, []fsEntry{
		textFile("top/a b+c%d&e=f\"g.txt", "odd name\n"),
		file("top/l1/x", 3000).withStat(0o600, mtime1),
		dirEntry("top/l1/empty").withStat(0o700, mtime3),
		textFile("top/.hidden", "h\n"),
		symlinkEntry("top/link", "l1/x"),
		symlinkEntry("top/dangling", "nowhere"),
		file("top/empty", 0).withStat(0o644, mtime2),
		textFile("hello.txt", "hello world\n"),
	})
	paths := []string{"top", "hello.txt"}

	var ours bytes.Buffer
	mw := multipart.NewWriter(&ours)
	if err := writeClusterBody(mw, root, paths); err != nil {
		t.Fatal(err)
	}
	var entries []files.DirEntry
	for _, p := range paths {
		local := filepath.Join(root, p)
		st, err := os.Lstat(local)
		if err != nil {
			t.Fatal(err)
		}
		n, err := files.NewSerialFile(local, true, st)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, files.FileEntry(path.Base(p), n))
	}
	mfr := files.NewMultiFileReader(files.NewSliceDirectory(entries), true, false)
	theirs, err := io.ReadAll(mfr)
	if err != nil {
		t.Fatal(err)
	}

	type part struct {
		header textproto.MIMEHeader
		body   string
	}
	parse := func(body []byte, boundary string) []part {
		var parts []part
		r := multipart.NewReader(bytes.NewReader(body), boundary)
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				return parts
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(p)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, part{p.Header, string(b)})
		}
	}
	got, want := parse(ours.Bytes(), mw.Boundary()), parse(theirs, mfr.Boundary())
	if len(got) != len(want) {
		t.Fatalf("%d parts, boxo %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("part %d:\n ours %+v\n boxo %+v", i, got[i], want[i])
		}
	}
}

// blockSink keeps every block, to look at the root's UnixFS type.
type blockSink struct {
	mu     sync.Mutex
	blocks map[cid.Cid][]byte
}

func (s *blockSink) Put(_ context.Context, c cid.Cid, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocks[c] = data
	return nil
}

// importTree streams the cluster body for paths through unixfs.Import and
// returns its non-progress outputs, in order.
func importTree(t *testing.T, root string, paths []string, o *unixfs.Options, pool *ingest.HashPool, sink ingest.Sink) []unixfs.Output {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() { pw.CloseWithError(writeClusterBody(mw, root, paths)) }()
	defer pr.Close() // unblocks the writer if Import stops early

	var outs []unixfs.Output
	roots, err := unixfs.Import(context.Background(), ingestmp.NewReader(pr, mw.Boundary()), o, pool, sink, func(out unixfs.Output) error {
		if !out.IsProgress() {
			outs = append(outs, out)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cannot import: %v", err)
	}
	if len(outs) == 0 || len(roots) == 0 {
		t.Fatalf("Import returned roots %v and %d outputs", roots, len(outs))
	}
	if last := outs[len(outs)-1]; !last.Cid.Equals(roots[len(roots)-1]) {
		t.Errorf("last output is %q %s, want the root %s", last.Name, last.Cid, roots[len(roots)-1])
	}
	return outs
}

// repoPool hands out kubo repositories, one command at a time each, so
// that parallel cases share a few repositories instead of paying ~0.5 s
// for a new one each.
type repoPool map[string]chan *kubotest.Repo

func newRepoPool(t *testing.T, sizes map[string]int) repoPool {
	t.Helper()
	p := repoPool{}
	for profile, n := range sizes {
		p[profile] = make(chan *kubotest.Repo, n)
		var profiles []string
		if profile != "" {
			profiles = []string{profile}
		}
		for range n {
			p[profile] <- kubotest.NewRepo(t, profiles...)
		}
	}
	return p
}

// kuboAdd runs the oracle and returns kubo's (name, CID) pairs in kubo's
// order; the root is last.
func (p repoPool) kuboAdd(t *testing.T, c conformanceCase, root string) []kubotest.AddEvent {
	t.Helper()
	ch, ok := p[c.profile]
	if !ok {
		t.Fatalf("no repository for profile %q", c.profile)
	}
	r := <-ch
	defer func() { ch <- r }()
	flags := append([]string{"-r"}, c.flags...)
	if !c.stored {
		return r.AddOnlyHash(t, root, flags, c.paths...)
	}
	args := append([]string{"add", "--pin=false", "--progress=false"}, flags...)
	args = append(args, "--")
	for _, p := range c.paths {
		args = append(args, filepath.Join(root, filepath.FromSlash(p)))
	}
	events, err := kubotest.ParseAddOutput(r.Run(t, nil, args...))
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func pairs[T any](items []T, pair func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = pair(it)
	}
	slices.Sort(out)
	return out
}

func TestConformance(t *testing.T) {
	kubotest.Binary(t) // skip (or fail in CI) before creating anything
	t.Parallel()
	repos := newRepoPool(t, map[string]int{"": 2, unixfs.ProfileV0: 1, unixfs.ProfileV1: 1})
	pool := ingest.NewHashPool(0)
	t.Cleanup(pool.Stop)

	for _, c := range conformanceCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.big && testing.Short() {
				t.Skip("100 MiB case skipped in -short mode")
			}
			t.Parallel()
			root := t.TempDir()
			writeTree(t, root, c.tree)
			o := optionsFor(t, c.profile, c.flags)

			events := repos.kuboAdd(t, c, root)
			if len(events) == 0 {
				t.Fatal("kubo added nothing")
			}
			want := pairs(events, func(e kubotest.AddEvent) string { return fmt.Sprintf("%q %s", e.Name, e.Hash) })
			wantRoot := events[len(events)-1].Hash

			runs := 2 // a second run catches state left in pooled objects
			if c.big {
				runs = 1
			}
			for run := range runs {
				var sink ingest.Sink = ingest.DiscardSink{}
				var blocks *blockSink
				if c.rootType != "" {
					blocks = &blockSink{blocks: map[cid.Cid][]byte{}}
					sink = blocks
				}
				outs := importTree(t, root, c.paths, &o, pool, sink)
				got := pairs(outs, func(o unixfs.Output) string { return fmt.Sprintf("%q %s", o.Name, o.Cid) })
				gotRoot := outs[len(outs)-1].Cid.String()
				if gotRoot != wantRoot {
					t.Errorf("run %d: root = %s, kubo %s", run, gotRoot, wantRoot)
				}
				if !slices.Equal(got, want) {
					t.Errorf("run %d: outputs differ from kubo's\n%s", run, diffPairs(got, want))
				}
				if blocks != nil {
					checkRootType(t, blocks, outs[len(outs)-1].Cid, c.rootType)
				}
				if t.Failed() {
					return
				}
			}
		})
	}
}

func checkRootType(t *testing.T, s *blockSink, root cid.Cid, want string) {
	t.Helper()
	data, ok := s.blocks[root]
	if !ok {
		t.Fatalf("root %s was not stored", root)
	}
	pn, err := dag.DecodeProtobuf(data)
	if err != nil {
		t.Fatalf("cannot decode root: %v", err)
	}
	fsn, err := ft.FSNodeFromBytes(pn.Data())
	if err != nil {
		t.Fatalf("cannot decode root: %v", err)
	}
	if fsn.Type().String() != want {
		t.Errorf("root type = %s, want %s", fsn.Type(), want)
	}
}

// diffPairs lists the pairs only one side has.
func diffPairs(got, want []string) string {
	var b strings.Builder
	for _, g := range got {
		if !slices.Contains(want, g) {
			fmt.Fprintf(&b, "  ours only: %s\n", g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			fmt.Fprintf(&b, "  kubo only: %s\n", w)
		}
	}
	if len(got) != len(want) {
		fmt.Fprintf(&b, "  %d outputs, kubo %d\n", len(got), len(want))
	}
	return b.String()
}
