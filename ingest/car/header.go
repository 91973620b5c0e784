package car

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/boxo/verifcid"
	cid "github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/multiformats/go-multicodec"
)

// carv2HeaderSize is the fixed CARv2 header that follows the pragma:
// characteristics (16 bytes), data offset, data size and index offset
// (little-endian uint64 each). https://ipld.io/specs/transport/car/carv2/
const carv2HeaderSize = 40

// header is a decoded CARv1 header (or the CARv2 pragma, which is a CARv1
// header with version 2 and no roots).
type header struct {
	version  int64
	roots    []cid.Cid
	hasRoots bool
}

// readHeader reads a length-prefixed DAG-CBOR CARv1 header.
func (im *importer) readHeader(what string) (*header, error) {
	in := im.in
	start := in.pos
	n, err := in.uvarint()
	if err != nil {
		return nil, in.fail(what, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("cannot read %s at offset %d: header length is 0: %w", what, start, ErrMalformed)
	}
	if n > uint64(im.o.maxHeaderSize) {
		return nil, fmt.Errorf("cannot read %s at offset %d: header is %d bytes, over the limit of %d: %w", what, start, n, im.o.maxHeaderSize, ErrHeaderTooLarge)
	}
	if in.v2 && n > in.payloadLeft() {
		return nil, fmt.Errorf("cannot read %s at offset %d: header of %d bytes runs past the end of the CARv2 data payload at offset %d: %w", what, start, n, in.end, ErrMalformed)
	}
	buf := make([]byte, n)
	if err := in.readFull(buf); err != nil {
		return nil, in.fail(what, err)
	}
	h, err := parseHeader(buf)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s at offset %d: %w: %w", what, start, err, ErrMalformed)
	}
	return h, nil
}

// parseHeader decodes {"version": Int, "roots": [&Any]}. Unknown keys are
// ignored, as go-car does.
func parseHeader(buf []byte) (*header, error) {
	if err := checkCBORLengths(buf); err != nil {
		return nil, fmt.Errorf("header is not DAG-CBOR: %v", err)
	}
	nb := basicnode.Prototype.Any.NewBuilder()
	if err := dagcbor.Decode(nb, bytes.NewReader(buf)); err != nil {
		return nil, fmt.Errorf("header is not DAG-CBOR: %v", err)
	}
	n := nb.Build()
	if n.Kind() != datamodel.Kind_Map {
		return nil, fmt.Errorf("header is a %s, not a map", n.Kind())
	}
	vn, err := n.LookupByString("version")
	if err != nil {
		return nil, errors.New("header has no version")
	}
	v, err := vn.AsInt()
	if err != nil || v < 0 {
		return nil, errors.New("header version is not a non-negative integer")
	}
	h := &header{version: v}
	rn, err := n.LookupByString("roots")
	if err != nil {
		return h, nil
	}
	if rn.Kind() != datamodel.Kind_List {
		return nil, fmt.Errorf("header roots are a %s, not a list", rn.Kind())
	}
	h.hasRoots = true
	h.roots = make([]cid.Cid, 0, rn.Length())
	for it := rn.ListIterator(); !it.Done(); {
		i, ln, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("cannot read header roots: %v", err)
		}
		l, err := ln.AsLink()
		if err != nil {
			return nil, fmt.Errorf("header root %d is a %s, not a CID", i, ln.Kind())
		}
		cl, ok := l.(cidlink.Link)
		if !ok {
			return nil, fmt.Errorf("header root %d is not a CID", i)
		}
		h.roots = append(h.roots, cl.Cid)
	}
	return h, nil
}

// readHeaders reads the CARv1 header, or the CARv2 pragma, header and the
// header of the data payload, and leaves the input at the first section.
func (im *importer) readHeaders() ([]cid.Cid, error) {
	h, err := im.readHeader("CAR header")
	if err != nil {
		return nil, err
	}
	switch h.version {
	case 1:
		if !h.hasRoots {
			return nil, fmt.Errorf("cannot read CAR header: CARv1 header has no roots field: %w", ErrMalformed)
		}
		return h.roots, nil
	case 2:
	default:
		return nil, fmt.Errorf("cannot read CAR header: CAR version %d is not supported (only 1 and 2): %w", h.version, ErrUnsupportedVersion)
	}

	in := im.in
	var buf [carv2HeaderSize]byte
	if err := in.readFull(buf[:]); err != nil {
		return nil, in.fail("CARv2 header", err)
	}
	headerEnd := in.pos
	dataOffset := binary.LittleEndian.Uint64(buf[16:])
	dataSize := binary.LittleEndian.Uint64(buf[24:])
	indexOffset := binary.LittleEndian.Uint64(buf[32:])
	dataEnd := dataOffset + dataSize
	switch {
	case dataOffset < headerEnd:
		return nil, fmt.Errorf("cannot read CARv2 header: data payload offset %d points inside the header, which ends at offset %d: %w", dataOffset, headerEnd, ErrMalformed)
	case dataSize == 0:
		return nil, fmt.Errorf("cannot read CARv2 header: data payload size is 0: %w", ErrMalformed)
	case dataEnd < dataOffset:
		return nil, fmt.Errorf("cannot read CARv2 header: data payload offset %d plus size %d overflows: %w", dataOffset, dataSize, ErrMalformed)
	case indexOffset != 0 && indexOffset < dataEnd:
		return nil, fmt.Errorf("cannot read CARv2 header: index offset %d points inside the data payload (offsets %d to %d): %w", indexOffset, dataOffset, dataEnd, ErrMalformed)
	}
	if err := in.skip(dataOffset - in.pos); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("cannot read CARv2 data payload: it starts at offset %d, past the end of the stream at offset %d: %w: %w", dataOffset, in.pos, ErrMalformed, io.ErrUnexpectedEOF)
		}
		return nil, in.fail("CARv2 padding", err)
	}
	in.v2, in.end = true, dataEnd
	im.dataSize, im.indexOffset = dataSize, indexOffset

	h, err = im.readHeader("CARv2 data payload header")
	if err != nil {
		return nil, err
	}
	if h.version != 1 || !h.hasRoots {
		return nil, fmt.Errorf("cannot read CARv2 data payload header at offset %d: it is not a CARv1 header with roots (version %d): %w", dataOffset, h.version, ErrMalformed)
	}
	return h.roots, nil
}

// readTail reads what follows the CARv2 data payload: padding and the index
// if the header declares one, and then nothing.
func (im *importer) readTail() error {
	in := im.in
	if !in.v2 {
		return nil
	}
	in.v2 = false
	if im.indexOffset == 0 {
		return im.expectEOF("the CARv2 data payload (the header declares no index)")
	}
	if err := in.skip(im.indexOffset - in.pos); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("cannot read CARv2 index: it starts at offset %d, past the end of the stream at offset %d: %w: %w", im.indexOffset, in.pos, ErrMalformed, io.ErrUnexpectedEOF)
		}
		return in.fail("CARv2 padding", err)
	}
	if err := im.readIndex(); err != nil {
		return err
	}
	return im.expectEOF("the CARv2 index")
}

func (im *importer) expectEOF(after string) error {
	_, err := im.in.ReadByte()
	switch {
	case err == nil:
		return fmt.Errorf("cannot read CAR: unexpected data at offset %d, after %s: %w", im.in.pos-1, after, ErrMalformed)
	case errors.Is(err, io.EOF):
		return nil
	default:
		return im.in.fail("end of CAR", err)
	}
}

// maxIndexWidth is the longest index record: a 128-byte digest (the
// longest verifcid accepts) and its 8-byte offset.
const maxIndexWidth = verifcid.DefaultMaxDigestSize + 8

// readIndex checks that the CARv2 index is well-formed without keeping it:
// go-car's index.ReadFrom allocates whatever length the input claims, and
// the blocks we pass on never come from the index anyway. Both index formats
// go-car writes are accepted (https://ipld.io/specs/transport/car/carv2/#index-format).
func (im *importer) readIndex() error {
	in := im.in
	what := fmt.Sprintf("CARv2 index at offset %d", in.pos)
	code, err := in.uvarint()
	if err != nil {
		return in.fail(what, err)
	}
	switch multicodec.Code(code) {
	case multicodec.CarIndexSorted:
		return im.readIndexBuckets(what)
	case multicodec.CarMultihashIndexSorted:
		n, err := im.readInt32(what)
		if err != nil {
			return err
		}
		for range n {
			var mhCode [8]byte
			if err := in.readFull(mhCode[:]); err != nil {
				return in.fail(what, err)
			}
			if err := im.readIndexBuckets(what); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("cannot read %s: unknown index codec 0x%x (want car-index-sorted 0x400 or car-multihash-index-sorted 0x401): %w", what, code, ErrMalformed)
	}
}

func (im *importer) readInt32(what string) (int32, error) {
	var b [4]byte
	if err := im.in.readFull(b[:]); err != nil {
		return 0, im.in.fail(what, err)
	}
	n := int32(binary.LittleEndian.Uint32(b[:]))
	if n < 0 {
		return 0, fmt.Errorf("cannot read %s: negative count %d at offset %d: %w", what, n, im.in.pos-4, ErrMalformed)
	}
	return n, nil
}

// readIndexBuckets reads go-car's multiWidthIndex: a count, then per digest
// width a sorted run of (digest, payload offset) records.
func (im *importer) readIndexBuckets(what string) error {
	in := im.in
	n, err := im.readInt32(what)
	if err != nil {
		return err
	}
	var rec, prev [maxIndexWidth]byte
	for range n {
		var hdr [12]byte
		at := in.pos
		if err := in.readFull(hdr[:]); err != nil {
			return in.fail(what, err)
		}
		width := uint64(binary.LittleEndian.Uint32(hdr[:4]))
		size := binary.LittleEndian.Uint64(hdr[4:])
		if width < 8 || width > maxIndexWidth {
			return fmt.Errorf("cannot read %s: bucket at offset %d has record width %d (want 8 to %d): %w", what, at, width, maxIndexWidth, ErrMalformed)
		}
		if size%width != 0 {
			return fmt.Errorf("cannot read %s: bucket at offset %d is %d bytes, not a multiple of its record width %d: %w", what, at, size, width, ErrMalformed)
		}
		dw := width - 8
		for i := range size / width {
			if err := in.readFull(rec[:width]); err != nil {
				return in.fail(what, err)
			}
			if off := binary.LittleEndian.Uint64(rec[dw:width]); off >= im.dataSize {
				return fmt.Errorf("cannot read %s: record at offset %d points at payload offset %d, past the end of the %d-byte data payload: %w", what, in.pos-width, off, im.dataSize, ErrMalformed)
			}
			if i > 0 && bytes.Compare(prev[:dw], rec[:dw]) > 0 {
				return fmt.Errorf("cannot read %s: record at offset %d is out of order: %w", what, in.pos-width, ErrMalformed)
			}
			prev, rec = rec, prev
		}
	}
	return nil
}
