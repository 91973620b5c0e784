package unixfs

import (
	"errors"
	"fmt"
	"os"
	"time"

	cid "github.com/ipfs/go-cid"
)

// Per-upload limits. They bound what the tree of an upload holds until its
// directories are built, whatever the shape of the tree: without them, 400
// parts with distinct 2,040-level paths (a 1.7 MB body) made 816,000
// implicit directories that each kept its full path, 3.6 GB (issue 11).
const (
	// DefaultMaxEntries bounds the entries of one upload, the directories
	// its paths imply included: each costs the tree about 150 bytes (a
	// directory with one child: 80 for the directory, 64 for its link in
	// the parent, and the link's slot) until the upload ends, so at most
	// about 600 MiB.
	DefaultMaxEntries = 4 << 20
	// DefaultMaxPathBytes bounds the sum of the path lengths of the
	// entries of one upload, implicit directories included (each is
	// charged its full path, the name kubo and ingestd output for it).
	// That bounds the names the tree keeps and the bytes of the outputs:
	// an upload whose parts name deep paths cannot make the response, or
	// the memory, grow with the square of the depth. 256 MiB allows the
	// DefaultMaxEntries entries 64-byte paths on average; the paths of
	// explicit entries are also bounded by the size of the upload.
	DefaultMaxPathBytes = 256 << 20
)

// ErrUploadLimit is wrapped when an upload exceeds MaxEntries or
// MaxPathBytes: the upload is too large for one add, not malformed.
var ErrUploadLimit = errors.New("unixfs: upload over a limit")

// dir is a directory of the upload being assembled. Only names and child
// CIDs are kept, never file content, so memory grows with the number of
// entries and not with the bytes uploaded.
type dir struct {
	// path is the directory's name in the outputs. Like every name in the
	// tree it is a substring of the path of the entry that made it, and
	// shares its bytes: a tree that kept a copy of the path of every
	// directory cost the square of its depth (issue 11).
	path     string
	mode     os.FileMode
	mtime    time.Time
	children []*dirChild          // in upload order
	index    map[string]*dirChild // by name, once there are more than indexFrom children
}

type dirChild struct {
	name     string
	sub      *dir // nil for files, symlinks and finished directories
	cid      cid.Cid
	tsize    uint64
	finished bool // a directory already built; nothing may be added to it
}

// indexFrom is how many children a directory holds before it gets a map:
// most implicit directories have one child, and a map costs a few hundred
// bytes even then.
const indexFrom = 8

func (d *dir) child(name string) *dirChild {
	if d.index != nil {
		return d.index[name]
	}
	for _, c := range d.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

// add adds c, whose path is path, unless d has a child of that name.
func (d *dir) add(c *dirChild, path string) error {
	if d.child(c.name) != nil {
		return fmt.Errorf("%w: %q is in the upload twice", ErrBadEntry, path)
	}
	d.children = append(d.children, c)
	switch {
	case d.index != nil:
		d.index[c.name] = c
	case len(d.children) > indexFrom:
		d.index = make(map[string]*dirChild, len(d.children))
		for _, c := range d.children {
			d.index[c.name] = c
		}
	}
	return nil
}

// budget counts what an upload has put in the tree against its limits.
type budget struct {
	entries, maxEntries     int
	pathBytes, maxPathBytes int
}

func newBudget(o *Options) *budget {
	b := &budget{maxEntries: o.MaxEntries, maxPathBytes: o.MaxPathBytes}
	if b.maxEntries <= 0 {
		b.maxEntries = DefaultMaxEntries
	}
	if b.maxPathBytes <= 0 {
		b.maxPathBytes = DefaultMaxPathBytes
	}
	return b
}

// charge counts one entry of the tree, explicit or implicit, at path.
func (b *budget) charge(path string) error {
	b.entries++
	b.pathBytes += len(path)
	switch {
	case b.entries > b.maxEntries:
		return fmt.Errorf("cannot add %q: the upload has more than %d entries, the directories its paths imply included: %w", shortPath(path), b.maxEntries, ErrUploadLimit)
	case b.pathBytes > b.maxPathBytes:
		return fmt.Errorf("cannot add %q: the paths of the upload, the directories they imply included, are over %d bytes: %w", shortPath(path), b.maxPathBytes, ErrUploadLimit)
	}
	return nil
}

// shortPath keeps an error message short: a path may have 4,096 bytes.
func shortPath(p string) string {
	if len(p) <= 128 {
		return p
	}
	return p[:128] + "…"
}
