package benchtool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kind is the shape of a Dataset.
type Kind int

// Dataset kinds.
const (
	// KindTree is Dirs directories of Files files each, under a top
	// directory "tree": the many-small-files workload.
	KindTree Kind = iota
	// KindFile is one file "file.bin" of FileSize bytes.
	KindFile
	// KindDeep is a chain of Depth nested directories ("deep", "deep/sub",
	// "deep/sub/sub", …), each holding Files files.
	KindDeep
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDeep:
		return "deep"
	}
	return "tree"
}

// ParseKind parses "file", "tree" or "deep".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "file":
		return KindFile, nil
	case "tree":
		return KindTree, nil
	case "deep":
		return KindDeep, nil
	}
	return 0, fmt.Errorf("cannot parse dataset %q: want file, tree or deep", s)
}

// Defaults of a Dataset's zero fields.
const (
	DefaultFileSize  = 1 << 30 // KindFile: one 1 GiB file
	DefaultSmallSize = 4 << 10 // KindTree and KindDeep: 4 KiB files
	DefaultDirs      = 100     // KindTree
	DefaultFiles     = 100     // KindTree; KindDeep has 1 file per level
	DefaultDepth     = 64      // KindDeep
	// MaxEntries bounds the entries of one dataset: ingestd refuses more
	// than 4 Mi entries in one upload (unixfs.DefaultMaxEntries).
	MaxEntries = 4 << 20
	// MaxDepth keeps paths of KindDeep within the 4096 bytes that servers
	// accept (ingest/multipart.MaxPathLength; "/sub" is 4 bytes a level).
	MaxDepth = 1000
)

// Dataset describes the content of one add. Zero fields take the defaults
// above; call Normalize (Run does) before the other methods.
type Dataset struct {
	Kind     Kind
	FileSize int64 // bytes per file; default 1 GiB for KindFile, 4 KiB otherwise
	Dirs     int   // KindTree: directories under the top one; default 100
	Files    int   // KindTree: files per directory (default 100); KindDeep: files per level (default 1)
	Depth    int   // KindDeep: nested directories, the top one included; default 64
	// CAR uploads the dataset's DAG as a CAR (cluster: /add?format=car,
	// kubo: /api/v0/dag/import) instead of the files.
	CAR bool
}

// Normalize fills the defaults and checks the bounds.
func (d *Dataset) Normalize() error {
	if d.FileSize == 0 {
		d.FileSize = DefaultSmallSize
		if d.Kind == KindFile {
			d.FileSize = DefaultFileSize
		}
	}
	if d.FileSize < 0 {
		return fmt.Errorf("cannot use file size %d: negative", d.FileSize)
	}
	switch d.Kind {
	case KindTree:
		if d.Dirs == 0 {
			d.Dirs = DefaultDirs
		}
		if d.Files == 0 {
			d.Files = DefaultFiles
		}
	case KindDeep:
		if d.Depth == 0 {
			d.Depth = DefaultDepth
		}
		if d.Files == 0 {
			d.Files = 1
		}
		if d.Depth > MaxDepth {
			return fmt.Errorf("cannot use depth %d: more than %d", d.Depth, MaxDepth)
		}
	case KindFile:
	default:
		return fmt.Errorf("cannot use dataset kind %d", d.Kind)
	}
	if d.Dirs < 0 || d.Files < 0 || d.Depth < 0 {
		return errors.New("cannot use a negative number of directories, files or levels")
	}
	if n := d.NumEntries(); n > MaxEntries || n < 0 {
		return fmt.Errorf("cannot use a dataset of %d entries: more than %d", n, MaxEntries)
	}
	return nil
}

// NumEntries is the number of parts of an upload of the files: files and
// directories.
func (d *Dataset) NumEntries() int {
	switch d.Kind {
	case KindFile:
		return 1
	case KindDeep:
		return d.Depth * (1 + d.Files)
	}
	return 1 + d.Dirs*(1+d.Files)
}

// NumFiles is the number of files.
func (d *Dataset) NumFiles() int {
	switch d.Kind {
	case KindFile:
		return 1
	case KindDeep:
		return d.Depth * d.Files
	}
	return d.Dirs * d.Files
}

// Bytes is the total size of the files' content.
func (d *Dataset) Bytes() int64 { return int64(d.NumFiles()) * d.FileSize }

// String describes the dataset for humans: "tree 100×100 × 4 KiB".
func (d *Dataset) String() string {
	var s string
	switch d.Kind {
	case KindFile:
		s = "file of " + FormatSize(d.FileSize)
	case KindDeep:
		s = fmt.Sprintf("deep %d levels × %d files × %s", d.Depth, d.Files, FormatSize(d.FileSize))
	default:
		s = fmt.Sprintf("tree %d×%d × %s", d.Dirs, d.Files, FormatSize(d.FileSize))
	}
	if d.CAR {
		s += ", as a CAR"
	}
	return s
}

// Entry is one part of an upload of a Dataset.
type Entry struct {
	Path  string // "tree/d03/f17", relative, "/"-separated
	Dir   bool
	Size  int64 // file size; 0 for directories
	Index int   // position in the upload; with the run's seed, names the content
}

// Entry returns entry i of the upload, 0 <= i < NumEntries(), in the order
// the cluster Go client sends a directory: depth first, names sorted, every
// directory before its contents.
func (d *Dataset) Entry(i int) Entry {
	switch d.Kind {
	case KindFile:
		return Entry{Path: "file.bin", Size: d.FileSize, Index: i}
	case KindDeep:
		level, r := i/(1+d.Files), i%(1+d.Files)
		p := "deep" + strings.Repeat("/sub", level)
		if r == 0 {
			return Entry{Path: p, Dir: true, Index: i}
		}
		// "f…" sorts before "sub": the files of a level come first.
		return Entry{Path: p + "/" + padded("f", r-1, d.Files), Size: d.FileSize, Index: i}
	}
	if i == 0 {
		return Entry{Path: "tree", Dir: true, Index: i}
	}
	dir, r := (i-1)/(1+d.Files), (i-1)%(1+d.Files)
	p := "tree/" + padded("d", dir, d.Dirs)
	if r == 0 {
		return Entry{Path: p, Dir: true, Index: i}
	}
	return Entry{Path: p + "/" + padded("f", r-1, d.Files), Size: d.FileSize, Index: i}
}

// padded is prefix+n with zeros to the width of n's largest value, so that
// names sort as numbers.
func padded(prefix string, n, count int) string {
	w := len(strconv.Itoa(max(count-1, 0)))
	s := strconv.Itoa(n)
	return prefix + strings.Repeat("0", w-len(s)) + s
}

// RunSeed derives the content seed of run (0, 1, …) from the base seed: the
// same for every target, different for every run.
func RunSeed(base uint64, run int) uint64 {
	return splitmix(base ^ splitmix(uint64(run)+0x9e3779b97f4a7c15))
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Content generation: every 4 KiB-aligned block of a file is a 16-byte tag
// (the file's identity, the block number) followed by 4080 bytes of a
// random pool at an offset that the tag picks. Tags make every block of
// every file of every run distinct; the pool makes the rest of the bytes
// random-looking; and producing a byte costs a copy, not a PRNG step
// (ChaCha8 made ~1.4 GB/s on the development VM, which would have taken a
// core away from the servers under test).
const (
	genBlock = 4 << 10
	tagSize  = 16
	poolSize = 1 << 20
)

// content produces the bytes of the files of one base seed.
type content struct {
	pool []byte // read-only after newContent
}

func newContent(base uint64) *content {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], base)
	binary.LittleEndian.PutUint64(seed[8:], 0x696e676573746462) // "ingestdb"
	pool := make([]byte, poolSize+genBlock)
	rand.NewChaCha8(seed).Read(pool)
	return &content{pool: pool}
}

// fileID names the content of entry index of the run with seed runSeed.
func fileID(runSeed uint64, index int) uint64 {
	return splitmix(runSeed ^ splitmix(uint64(index)))
}

// fill writes bytes [off, off+len(p)) of the file id into p.
func (g *content) fill(id uint64, off int64, p []byte) {
	for len(p) > 0 {
		blk := uint64(off) / genBlock
		in := int(uint64(off) % genBlock)
		n := min(genBlock-in, len(p))
		var tag [tagSize]byte
		binary.LittleEndian.PutUint64(tag[:8], id)
		binary.LittleEndian.PutUint64(tag[8:], blk)
		start := int(splitmix(id^(blk*0xff51afd7ed558ccd)) % poolSize)
		w := 0
		if in < tagSize {
			w = copy(p[:n], tag[in:])
		}
		copy(p[w:n], g.pool[start+in+w:start+in+n])
		p, off = p[n:], off+int64(n)
	}
}

// WriteFiles writes the files of run seed runSeed under dir, as they are
// uploaded (dir/tree/d00/f00, …), so that `ipfs add -r` can compute the
// same CIDs independently. The dataset must be normalized; d.CAR is
// ignored (the files are what the CAR is built from).
func (d *Dataset) WriteFiles(dir string, base, runSeed uint64) error {
	g := newContent(base)
	buf := make([]byte, 1<<20)
	for i := range d.NumEntries() {
		e := d.Entry(i)
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if e.Dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("cannot create %s: %w", p, err)
			}
			continue
		}
		if err := writeFile(p, g, fileID(runSeed, e.Index), e.Size, buf); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(p string, g *content, id uint64, size int64, buf []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", p, err)
	}
	w := bufio.NewWriterSize(f, len(buf))
	for off := int64(0); off < size; {
		n := int(min(int64(len(buf)), size-off))
		g.fill(id, off, buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			f.Close()
			return fmt.Errorf("cannot write %s: %w", p, err)
		}
		off += int64(n)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", p, err)
	}
	return nil
}

// ParseSize parses a byte count: "4096", "4KiB", "1GiB", "1.5MiB" (binary
// units), "4kB", "1GB" (decimal units).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult := map[string]float64{
		"": 1, "B": 1,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("cannot parse size %q: want a number of bytes, or one with KiB, MiB, GiB, kB, MB or GB", s)
	}
	return int64(v * mult), nil
}

// FormatSize prints n in binary units: "4 KiB", "1 GiB", "1.5 MiB".
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, u := float64(n), 0
	for v >= 1024 && u < len(units)-1 {
		v, u = v/1024, u+1
	}
	num := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(v, 'f', 2, 64), "0"), ".")
	return num + " " + units[u]
}
