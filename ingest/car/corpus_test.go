package car_test

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	gocar "github.com/ipld/go-car/v2"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/codec/dagjson"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.car from the corpus generator")

// TestGenerateCorpus builds every file of testdata/ and checks that the
// committed files are its output; `go test -run TestGenerateCorpus -update
// ./ingest/car` rewrites them. The expected result of each file is in
// corpusCases (car_test.go).
func TestGenerateCorpus(t *testing.T) {
	files := corpus()
	if *update {
		old, _ := filepath.Glob("testdata/*.car")
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	committed, err := filepath.Glob("testdata/*.car")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range committed {
		names = append(names, filepath.Base(p))
	}
	if want := slices.Sorted(maps.Keys(files)); !slices.Equal(names, want) {
		t.Fatalf("testdata holds %q, the generator makes %q; run with -update", names, want)
	}
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("testdata/%s differs from the generator's output; run with -update", name)
		}
	}
}

// testDAGs are the DAGs the corpus is made of.
type testDAGs struct {
	fileRoot   cid.Cid
	fileBlocks []carBlock // UnixFS file, CIDv0, root last
	cborRoot   cid.Cid
	cborBlocks []carBlock // dag-cbor -> dag-cbor -> raw, root first
	jsonRoot   cid.Cid
	jsonBlocks []carBlock // dag-json -> dag-json -> raw, plus an identity link
}

func newTestDAGs() *testDAGs {
	d := &testDAGs{}
	// 10 KiB in 1 KiB chunks with 4 links per node: 10 leaves, 3
	// intermediate nodes and the root.
	d.fileRoot, d.fileBlocks = unixfsDAG(randomBytes(10<<10, 1), 1<<10, 4, false, nil)

	leaf := rawBlock([]byte("a raw leaf below a dag-cbor node\n"))
	child := encodeNode(cid.DagCBOR, qpMap(func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "name", qp.String("child"))
		qp.MapEntry(ma, "leaf", qp.Link(cidlink.Link{Cid: leaf.cid}))
	}))
	root := encodeNode(cid.DagCBOR, qpMap(func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "children", qp.List(1, func(la datamodel.ListAssembler) {
			qp.ListEntry(la, qp.Link(cidlink.Link{Cid: child.cid}))
		}))
		qp.MapEntry(ma, "bytes", qp.Bytes([]byte{1, 2, 3}))
	}))
	d.cborRoot, d.cborBlocks = root.cid, []carBlock{root, child, leaf}

	jleaf := rawBlock([]byte("a raw leaf below a dag-json node\n"))
	inline, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum([]byte("inline"))
	jchild := encodeNode(cid.DagJSON, qpMap(func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "leaf", qp.Link(cidlink.Link{Cid: jleaf.cid}))
		qp.MapEntry(ma, "inline", qp.Link(cidlink.Link{Cid: inline}))
	}))
	jroot := encodeNode(cid.DagJSON, qpMap(func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "child", qp.Link(cidlink.Link{Cid: jchild.cid}))
	}))
	d.jsonRoot, d.jsonBlocks = jroot.cid, []carBlock{jroot, jchild, jleaf}
	return d
}

func qpMap(fn func(datamodel.MapAssembler)) datamodel.Node {
	n, err := qp.BuildMap(basicnode.Prototype.Any, -1, fn)
	if err != nil {
		panic(err)
	}
	return n
}

// encodeNode encodes n with codec (dag-cbor or dag-json).
func encodeNode(codec uint64, n datamodel.Node) carBlock {
	var buf bytes.Buffer
	var err error
	switch codec {
	case cid.DagCBOR:
		err = dagcbor.Encode(n, &buf)
	case cid.DagJSON:
		err = dagjson.Encode(n, &buf)
	}
	if err != nil {
		panic(err)
	}
	c, err := cid.Prefix{Version: 1, Codec: codec, MhType: mh.SHA2_256, MhLength: -1}.Sum(buf.Bytes())
	if err != nil {
		panic(err)
	}
	return carBlock{c, buf.Bytes()}
}

// wrapV2 turns a CARv1 into a CARv2 with go-car's own index.
func wrapV2(v1 []byte) []byte {
	var out bytes.Buffer
	if err := gocar.WrapV1(bytes.NewReader(v1), &out); err != nil {
		panic(err)
	}
	return out.Bytes()
}

// corpus returns every testdata file by name.
func corpus() map[string][]byte {
	d := newTestDAGs()
	files := map[string][]byte{}
	fileV1 := carV1([]cid.Cid{d.fileRoot}, d.fileBlocks)
	hdrLen := len(headerBytes(1, []cid.Cid{d.fileRoot}))

	// Valid.
	files["valid-v1-unixfs.car"] = fileV1
	files["valid-v2-unixfs.car"] = wrapV2(fileV1)
	files["valid-v2-unixfs-noindex.car"] = carV2(fileV1, nil)
	files["valid-v1-dagcbor.car"] = carV1([]cid.Cid{d.cborRoot}, d.cborBlocks)
	files["valid-v1-dagjson.car"] = carV1([]cid.Cid{d.jsonRoot}, d.jsonBlocks)

	// Framing.
	files["truncated-header.car"] = fileV1[:hdrLen/2]
	second := hdrLen + len(sectionBytes(d.fileBlocks[0].cid, d.fileBlocks[0].data))
	files["truncated-section.car"] = fileV1[:second+100]
	files["varint-overflow.car"] = append(slices.Clip(fileV1[:hdrLen]), bytes.Repeat([]byte{0xff}, 10)...)
	files["zero-length-section.car"] = append(slices.Clip(fileV1[:hdrLen]), 0)
	files["header-too-large.car"] = append(binary.AppendUvarint(nil, 40000), bytes.Repeat([]byte{0xa2}, 16)...)
	big := d.fileBlocks[0].cid
	tooLarge := append(slices.Clip(fileV1[:hdrLen]), binary.AppendUvarint(nil, uint64(big.ByteLen()+2<<20+1))...)
	files["block-too-large.car"] = append(append(tooLarge, big.Bytes()...), bytes.Repeat([]byte{0}, 100)...)
	short := append(slices.Clip(fileV1[:hdrLen]), 10)
	files["short-section.car"] = append(short, sectionBytes(d.fileBlocks[0].cid, d.fileBlocks[0].data)[1:]...)
	files["version-3.car"] = headerBytes(3, []cid.Cid{d.fileRoot})

	// Verification.
	bad := slices.Clone(d.cborBlocks)
	bad[2].data = []byte("a raw leaf below a dag-cbor node!\n")
	files["hash-mismatch.car"] = carV1([]cid.Cid{d.cborRoot}, bad)
	idc, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum([]byte("hello"))
	files["identity-mismatch.car"] = carV1([]cid.Cid{idc}, []carBlock{{idc, []byte("world")}})
	md5Data := []byte("hashed with md5")
	sum := md5.Sum(md5Data)
	md5Hash, _ := mh.Encode(sum[:], mh.MD5)
	md5Cid := cid.NewCidV1(cid.Raw, md5Hash)
	files["unsupported-hash.car"] = carV1([]cid.Cid{md5Cid}, []carBlock{{md5Cid, md5Data}})
	// Identity CIDs one byte over kubo's limit (verifcid), as a section,
	// a root and a link.
	overData := bytes.Repeat([]byte{'i'}, ingest.MaxIdentityDigestSize+1)
	over, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum(overData)
	linksOver := dag.NodeWithData(ft.FolderPBData())
	if err := linksOver.AddRawLink("big", &ipld.Link{Cid: over, Size: uint64(len(overData))}); err != nil {
		panic(err)
	}
	linksOverBlock := carBlock{linksOver.Cid(), linksOver.RawData()}
	files["identity-section-too-large.car"] = carV1([]cid.Cid{linksOver.Cid()}, []carBlock{{over, overData}, linksOverBlock})
	files["identity-root-too-large.car"] = carV1([]cid.Cid{over}, nil)
	files["identity-link-too-large.car"] = carV1([]cid.Cid{linksOver.Cid()}, []carBlock{linksOverBlock})

	// CARv2.
	v2 := wrapV2(fileV1)
	indexAt := binary.LittleEndian.Uint64(v2[11+32:])
	files["v2-index-truncated.car"] = v2[:len(v2)-5]
	unsorted := slices.Clone(v2)
	// car-multihash-index-sorted: codec (2 bytes), count, mh code, bucket
	// count, width, size, then 40-byte records.
	rec := int(indexAt) + 2 + 4 + 8 + 4 + 4 + 8
	first := slices.Clone(unsorted[rec : rec+40])
	copy(unsorted[rec:], unsorted[rec+40:rec+80])
	copy(unsorted[rec+40:], first)
	files["v2-index-unsorted.car"] = unsorted
	unknown := slices.Clone(v2)
	unknown[indexAt], unknown[indexAt+1] = 0x81, 0x0a // 0x501
	files["v2-index-unknown-codec.car"] = unknown
	badOffset := slices.Clone(v2)
	dataOffset, _, _ := v2Fields(badOffset)
	binary.LittleEndian.PutUint64(dataOffset, 20)
	files["v2-bad-payload-offset.car"] = badOffset
	pastEOF := slices.Clone(v2)
	dataOffset, _, _ = v2Fields(pastEOF)
	binary.LittleEndian.PutUint64(dataOffset, 1<<20)
	_, _, indexOffset := v2Fields(pastEOF)
	binary.LittleEndian.PutUint64(indexOffset, 0)
	files["v2-payload-offset-past-eof.car"] = pastEOF
	longer := carV2(fileV1, nil)
	_, dataSize, _ := v2Fields(longer)
	binary.LittleEndian.PutUint64(dataSize, uint64(len(fileV1)+1000))
	files["v2-payload-past-eof.car"] = longer
	trailing := append(carV2(fileV1, nil), 0)
	files["v2-trailing-data.car"] = trailing

	// Roots.
	files["zero-roots.car"] = carV1([]cid.Cid{}, d.fileBlocks)
	files["two-roots.car"] = carV1([]cid.Cid{d.fileRoot, d.cborRoot}, append(slices.Clone(d.fileBlocks), d.cborBlocks...))

	// Completeness.
	files["root-absent.car"] = carV1([]cid.Cid{d.fileRoot}, d.fileBlocks[:len(d.fileBlocks)-1])
	var withoutInner []carBlock
	dropped := false
	for _, b := range d.fileBlocks[:len(d.fileBlocks)-1] {
		pn, err := dag.DecodeProtobuf(b.data)
		if err == nil && len(pn.Links()) > 0 && !dropped {
			dropped = true
			continue
		}
		withoutInner = append(withoutInner, b)
	}
	files["missing-intermediate.car"] = carV1([]cid.Cid{d.fileRoot}, append(withoutInner, d.fileBlocks[len(d.fileBlocks)-1]))

	gitData := []byte("blob 6\x00hello\n")
	gitHash, _ := mh.Sum(gitData, mh.SHA1, -1)
	gitCid := cid.NewCidV1(0x78, gitHash)
	pn := dag.NodeWithData(ft.FolderPBData())
	if err := pn.AddRawLink("git", &ipld.Link{Cid: gitCid, Size: uint64(len(gitData))}); err != nil {
		panic(err)
	}
	files["undecodable-link.car"] = carV1([]cid.Cid{pn.Cid()}, []carBlock{{pn.Cid(), pn.RawData()}, {gitCid, gitData}})
	notPB := []byte{0xff, 0xff, 0xff}
	notPBCid, _ := cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}.Sum(notPB)
	files["root-not-dagpb.car"] = carV1([]cid.Cid{notPBCid}, []carBlock{{notPBCid, notPB}})
	return files
}
