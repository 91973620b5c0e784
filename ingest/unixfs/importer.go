package unixfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/multipart"
)

// Output is one object of the /add response stream (IPFS Cluster's
// AddedOutput without allocations). A progress object has an undefined Cid
// and Bytes set.
type Output struct {
	Name  string
	Cid   cid.Cid
	Size  uint64 // cumulative DAG size, as kubo's Size
	Bytes uint64 // bytes of the current file read so far (progress only)
}

// IsProgress reports whether o is a progress object.
func (o Output) IsProgress() bool { return !o.Cid.Defined() }

// EntryReader yields the entries of an upload; *multipart.Reader is one.
type EntryReader interface {
	Next() (*multipart.Entry, error)
}

// progressStep is how often progress objects are emitted, as kubo's and
// IPFS Cluster's progressReaderIncrement.
const progressStep = 256 << 10

// ErrNoFiles is returned for an upload without any entry.
var ErrNoFiles = errors.New("unixfs: no files in the upload")

// Import reads every entry of r, builds the UnixFS DAG exactly as
// `ipfs add` would with the same options, sends every block to sink and
// reports each file, directory and the root to emit, in IPFS Cluster's
// order: files as they finish, then directories, children before parents,
// then the wrapping directory. It returns the roots that should be pinned:
// one per top-level entry, or the wrapper alone with Options.Wrap.
//
// Without Options.Wrap each top-level entry is a separate add, as in kubo
// (one Unixfs().Add per path) and IPFS Cluster (one AddAllAndPin per
// entry): a top-level directory is finished and reported as soon as the
// next top-level entry starts, so the last output is always the last root.
//
// o must have been resolved (Options.Resolve). emit is called on the
// calling goroutine.
func Import(ctx context.Context, r EntryReader, o *Options, pool *ingest.HashPool, sink ingest.Sink, emit func(Output) error) ([]cid.Cid, error) {
	if o.builder == nil {
		return nil, errors.New("unixfs: options not resolved")
	}
	top := &dir{}
	limits := newBudget(o)
	open := "" // unwrapped top-level entry the last entry belonged to
	// Without wrap, a directory part named "", "." or ".." is the root of
	// the add, and every later part is inside it: boxo's multipart walker,
	// which kubo reads uploads with, takes it for "/", of which every path
	// is a child. kubo then outputs it as "" (verified with kubo 0.42;
	// conformance_http_test.go). With wrap, kubo refuses it ("no path given
	// to Mkdir").
	var root *dir
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read upload: %w", err)
		}
		if err := limits.charge(e.Path); err != nil {
			return nil, err
		}
		parent := top
		if !o.Wrap && root == nil {
			first, _, _ := strings.Cut(e.Path, "/")
			if first != open {
				if err := top.finish(ctx, open, o, sink, emit); err != nil {
					return nil, err
				}
				open = first
			}
			if e.Kind == multipart.Dir && e.Path == "" {
				root = &dir{}
				root.mode, root.mtime = stat(e, o)
				if err := top.add(&dirChild{sub: root}, ""); err != nil {
					return nil, err
				}
				continue
			}
		}
		if root != nil {
			parent = root
		}
		if err := addEntry(ctx, parent, !o.Wrap && parent == top, limits, e, o, pool, sink, emit); err != nil {
			return nil, err
		}
	}
	if len(top.children) == 0 {
		return nil, ErrNoFiles
	}
	if o.Wrap {
		c, _, err := top.build(ctx, o, sink, emit)
		if err != nil {
			return nil, err
		}
		return []cid.Cid{c}, nil
	}
	if err := top.finish(ctx, open, o, sink, emit); err != nil {
		return nil, err
	}
	roots := make([]cid.Cid, 0, len(top.children))
	for _, c := range top.children {
		roots = append(roots, c.cid)
	}
	return roots, nil
}

// finish builds the child directory name of d, the unwrapped top level,
// if there is one still open, and keeps only its CID. Entries that come
// later under that name are rejected: the parts of one directory must be
// contiguous (spec §4.2).
func (d *dir) finish(ctx context.Context, name string, o *Options, sink ingest.Sink, emit func(Output) error) error {
	c := d.child(name)
	if c == nil || c.sub == nil {
		return nil
	}
	var err error
	if c.cid, c.tsize, err = c.sub.build(ctx, o, sink, emit); err != nil {
		return err
	}
	c.sub, c.finished = nil, true
	return nil
}

// stat is the mode and mtime of e that the options keep.
func stat(e *multipart.Entry, o *Options) (os.FileMode, time.Time) {
	mode, mtime := e.Mode, e.Mtime
	if !o.PreserveMode {
		mode = 0
	}
	if !o.PreserveMtime {
		mtime = time.Time{}
	}
	return mode, mtime
}

// addEntry places e in the tree below top, creating implicit parent
// directories, each charged to limits, and builds it if it is a file or a
// symlink. addRoot: top is the unwrapped top level, where each entry is an
// add of its own.
func addEntry(ctx context.Context, top *dir, addRoot bool, limits *budget, e *multipart.Entry, o *Options, pool *ingest.HashPool, sink ingest.Sink, emit func(Output) error) error {
	parent := top
	path := e.Path
	// Walk the path without splitting it: every name and path below is a
	// substring of e.Path, so the names the tree keeps share its bytes.
	start := 0
	for {
		i := strings.IndexByte(path[start:], '/')
		if i < 0 {
			break
		}
		el, elPath := path[start:start+i], path[:start+i]
		start += i + 1
		c := parent.child(el)
		if c == nil {
			if err := limits.charge(elPath); err != nil {
				return err
			}
			c = &dirChild{name: el, sub: &dir{path: elPath}}
			if err := parent.add(c, elPath); err != nil {
				return err
			}
		}
		if c.finished {
			return fmt.Errorf("%w: the entries of directory %q are not contiguous", ErrBadEntry, elPath)
		}
		if c.sub == nil {
			return fmt.Errorf("%w: %q is a file, not a directory", ErrBadEntry, elPath)
		}
		parent = c.sub
	}
	name := path[start:]
	dirPath := ""
	if start > 0 {
		dirPath = path[:start-1]
	}
	mode, mtime := stat(e, o)
	switch e.Kind {
	case multipart.Dir:
		if name == "" {
			return fmt.Errorf("%w: a directory part named \"\", \".\" or \"..\" is the root of an add: it cannot be wrapped or come twice", ErrBadEntry)
		}
		if c := parent.child(name); c != nil {
			// A directory part after its children were seen (or twice):
			// keep the tree, take the stat.
			if c.sub == nil {
				return fmt.Errorf("%w: %q is in the upload twice", ErrBadEntry, path)
			}
			c.sub.mode, c.sub.mtime = mode, mtime
			return nil
		}
		return parent.add(&dirChild{name: name, sub: &dir{path: path, mode: mode, mtime: mtime}}, path)
	case multipart.Symlink:
		data, err := ft.SymlinkData(e.Target)
		if err != nil {
			return fmt.Errorf("cannot encode symlink %q: %w", path, err)
		}
		if !mtime.IsZero() {
			fsn, err := ft.FSNodeFromBytes(data)
			if err != nil {
				return fmt.Errorf("cannot encode symlink %q: %w", path, err)
			}
			fsn.SetModTime(mtime)
			if data, err = fsn.GetBytes(); err != nil {
				return fmt.Errorf("cannot encode symlink %q: %w", path, err)
			}
		}
		pn := dag.NodeWithData(data)
		if err := pn.SetCidBuilder(o.builder); err != nil {
			return fmt.Errorf("cannot encode symlink %q: %w", path, err)
		}
		if err := putNode(ctx, sink, pn); err != nil {
			return err
		}
		size, _ := pn.Size()
		return addBuilt(parent, dirPath, addRoot, name, pn.Cid(), size, o, emit)
	default:
		if name != "" && parent.child(name) != nil {
			return fmt.Errorf("%w: %q is in the upload twice", ErrBadEntry, path)
		}
		var onRead func(int)
		var read, last uint64
		if o.Progress {
			onRead = func(n int) {
				if read += uint64(n); read-last >= progressStep {
					last = read
					_ = emit(Output{Name: path, Bytes: read})
				}
			}
		}
		root, err := buildFile(ctx, e.Body, o, pool, sink, mode, mtime, onRead)
		if err != nil {
			return fmt.Errorf("cannot import file %q: %w", path, err)
		}
		if o.Progress && (read != last || read == 0) {
			if err := emit(Output{Name: path, Bytes: read}); err != nil {
				return err
			}
		}
		return addBuilt(parent, dirPath, addRoot, name, root.cid, root.tsize, o, emit)
	}
}

// addBuilt links a file or symlink into its directory and emits it. One
// without a name ("", "." or ".." in the upload) is named by its CID, as
// kubo's Adder.addNode does, in a directory and at the top level alike.
func addBuilt(parent *dir, dirPath string, addRoot bool, name string, c cid.Cid, tsize uint64, o *Options, emit func(Output) error) error {
	if name == "" {
		name = c.String()
	}
	if addRoot {
		if err := checkAddRoot(o, c, tsize); err != nil {
			return err
		}
	}
	path := joinName(dirPath, name)
	// A copy: the name is a substring of the entry's path, which may be
	// 4 KiB long.
	if err := parent.add(&dirChild{name: strings.Clone(name), cid: c, tsize: tsize}, path); err != nil {
		return err
	}
	return emit(Output{Name: path, Cid: c, Size: tsize})
}

// checkAddRoot fails where kubo fails on an unwrapped file or symlink. kubo
// adds it at the path "", so its Adder.addNode links it into the root
// directory of its MFS under its CID string, whatever its name, and then
// swaps the root for it: that directory is never output, but it is a
// block, checked as every block is. With hash=identity it may carry at most
// ingest.MaxIdentityDigestSize bytes, so kubo 0.42 fails the add of a
// single file of 41 bytes or more (it shows the file's CID, then the
// error), although the file's own CID is within the limit.
func checkAddRoot(o *Options, c cid.Cid, tsize uint64) error {
	if o.HashFunc != mh.IDENTITY {
		return nil
	}
	nd := ft.EmptyDirNode()
	if err := nd.SetCidBuilder(o.builder); err != nil {
		return fmt.Errorf("cannot encode the root directory of %s: %w", c, err)
	}
	if err := nd.AddRawLink(c.String(), &ipld.Link{Cid: c, Size: tsize}); err != nil {
		return fmt.Errorf("cannot encode the root directory of %s: %w", c, err)
	}
	return checkIdentity(nd.Cid())
}
