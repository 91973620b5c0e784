package unixfs

import (
	"encoding/binary"

	ft "github.com/ipfs/boxo/ipld/unixfs"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
)

// encodeLeaf is the dag-pb encoding of a UnixFS leaf without links,
// metadata or block sizes, written in one pass: PBNode{Data: Data{Type,
// Data, filesize}}. It equals what boxo's FSNode.GetBytes plus
// ProtoNode.RawData produce (TestEncodeLeafMatchesBoxo) with one copy of
// the chunk instead of two.
func encodeLeaf(out, data []byte, typ pb.Data_DataType) []byte {
	n := uint64(len(data))
	inner := leafInnerLen(len(data), typ)
	out = append(out, 0x0a) // PBNode.Data, field 1, bytes
	out = binary.AppendUvarint(out, uint64(inner))
	out = append(out, 0x08) // Data.Type, field 1, varint
	out = binary.AppendUvarint(out, uint64(typ))
	out = append(out, 0x12) // Data.Data, field 2, bytes
	out = binary.AppendUvarint(out, n)
	out = append(out, data...)
	out = append(out, 0x18) // Data.filesize, field 3, varint
	return binary.AppendUvarint(out, n)
}

func leafInnerLen(n int, typ pb.Data_DataType) int {
	return 1 + uvarintLen(uint64(typ)) + 1 + uvarintLen(uint64(n)) + n + 1 + uvarintLen(uint64(n))
}

// encodedLeafLen bounds the size of encodeLeaf's output for n bytes of data.
func encodedLeafLen(n int) int {
	inner := leafInnerLen(n, ft.TFile) // TFile and TRaw both encode in one byte
	return 1 + uvarintLen(uint64(inner)) + inner
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}
