package benchtool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"sync/atomic"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/ingest"
	ingestmultipart "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/restapi"
)

// CARs are built by ingestd's own UnixFS importer from the generated files,
// with the add options of the run (parsed as ingestd parses /add's query,
// so that they mean what they mean to `ipfs add`). A CARv1 header names the
// root first, so each CAR is built twice: once, before the round and
// untimed, to learn the root (carRoot), and once while it is uploaded
// (carBody), its blocks streamed into the request as the importer makes
// them. Both runs produce the same DAG; carBody checks that.

// unixfsOptions parses the add options as ingestd's /add does.
func unixfsOptions(q url.Values) (*unixfs.Options, error) {
	p, err := restapi.ParseAddParams(restapi.ValuesQuery(q))
	if err != nil {
		return nil, fmt.Errorf("cannot build a CAR with options %q: %w", q.Encode(), err)
	}
	if p.Unixfs.Wrap {
		return nil, errors.New("cannot build a CAR with wrap-with-directory")
	}
	return &p.Unixfs, nil
}

// importFiles runs the UnixFS importer over the generated files of runSeed
// and returns the root.
func importFiles(ctx context.Context, ds *Dataset, g *content, runSeed uint64, o *unixfs.Options, pool *ingest.HashPool, sink ingest.Sink, sent *atomic.Int64) (cid.Cid, error) {
	body := newFilesBody(ds, g, runSeed, sent)
	r := ingestmultipart.NewReader(body, body.boundary)
	roots, err := unixfs.Import(ctx, r, o, pool, sink, func(unixfs.Output) error { return nil })
	if err != nil {
		return cid.Undef, fmt.Errorf("cannot build the DAG of the CAR: %w", err)
	}
	if len(roots) != 1 {
		return cid.Undef, fmt.Errorf("cannot build the DAG of the CAR: %d roots", len(roots))
	}
	return roots[0], nil
}

// carRoot computes the root of the CAR of runSeed's files.
func carRoot(ctx context.Context, ds *Dataset, g *content, runSeed uint64, o *unixfs.Options, pool *ingest.HashPool) (cid.Cid, error) {
	return importFiles(ctx, ds, g, runSeed, o, pool, ingest.DiscardSink{}, nil)
}

// carSink writes each block as a CARv1 section. Put is called on the
// importer's goroutine only (it is not an ingest.ConcurrentSink), so
// sections are written one at a time; it writes the data out before
// returning (ingest.CopyingSink), so the importer keeps its buffers.
type carSink struct {
	w   *bufio.Writer
	hdr [binary.MaxVarintLen64]byte
}

func (s *carSink) Put(_ context.Context, c cid.Cid, data []byte) error {
	cb := c.Bytes()
	n := binary.PutUvarint(s.hdr[:], uint64(len(cb)+len(data)))
	s.w.Write(s.hdr[:n])
	s.w.Write(cb)
	_, err := s.w.Write(data)
	return err
}

func (*carSink) CopiesData() {}

// carHeader is the CARv1 header with one root: a varint length, then the
// DAG-CBOR map {"roots": [root], "version": 1} (keys in DAG-CBOR's order:
// shorter first).
func carHeader(root cid.Cid) []byte {
	cb := root.Bytes()
	var m []byte
	m = append(m, 0xa2)                          // map(2)
	m = append(m, 0x65, 'r', 'o', 'o', 't', 's') // "roots"
	m = append(m, 0x81, 0xd8, 0x2a)              // array(1), tag(42)
	// bytes(n): the length in the type byte, or in the byte after it.
	if n := len(cb) + 1; n < 24 {
		m = append(m, 0x40|byte(n))
	} else {
		m = append(m, 0x58, byte(n))
	}
	m = append(m, 0x00) // multibase identity prefix
	m = append(m, cb...)
	m = append(m, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01) // "version": 1
	h := binary.AppendUvarint(nil, uint64(len(m)))
	return append(h, m...)
}

// carBody streams the multipart body of a CAR upload into w: one part
// "data.car" whose content is the CAR of runSeed's files with root root.
func carBody(ctx context.Context, w io.Writer, boundary string, ds *Dataset, g *content, runSeed uint64, o *unixfs.Options, pool *ingest.HashPool, root cid.Cid, sent *atomic.Int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	mw := multipart.NewWriter(bw)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	part, err := mw.CreateFormFile("file", "data.car")
	if err != nil {
		return err
	}
	// The part writer writes straight through to bw: the sink can write
	// to bw as well, and save a copy per block.
	if _, err := part.Write(carHeader(root)); err != nil {
		return err
	}
	got, err := importFiles(ctx, ds, g, runSeed, o, pool, &carSink{w: bw}, sent)
	if err != nil {
		return err
	}
	if !got.Equals(root) {
		return fmt.Errorf("cannot build the CAR: root %s, but the first build made %s", got, root)
	}
	if err := mw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
