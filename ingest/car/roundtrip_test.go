package car_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	gocar "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/blockstore"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
)

// TestRoundTripGoCar writes DAGs with go-car v2's own writers, CARv1
// (storage.NewWritable) and CARv2 with an index (blockstore.OpenReadWrite),
// and checks that Import returns the same root and exactly the same blocks.
func TestRoundTripGoCar(t *testing.T) {
	pool := ingest.NewHashPool(4)
	defer pool.Stop()
	v1Builder := cid.V1Builder{Codec: cid.DagProtobuf, MhType: 0x12}
	dags := []struct {
		name   string
		root   cid.Cid
		blocks []carBlock
	}{}
	add := func(name string, root cid.Cid, blocks []carBlock) {
		dags = append(dags, struct {
			name   string
			root   cid.Cid
			blocks []carBlock
		}{name, root, blocks})
	}
	r, b := unixfsDAG(randomBytes(1<<20, 2), 1<<10, 174, false, nil)
	add("unixfs-v0-deep", r, b) // 1024 leaves: two levels of dag-pb nodes
	r, b = unixfsDAG(randomBytes(3<<20+17, 3), 256<<10, 174, true, v1Builder)
	add("unixfs-v1-raw-leaves", r, b)
	d := newTestDAGs()
	add("dag-cbor", d.cborRoot, d.cborBlocks)
	add("dag-json", d.jsonRoot, d.jsonBlocks)

	for _, dag := range dags {
		want := map[string][]byte{}
		for _, b := range dag.blocks {
			want[b.cid.KeyString()] = b.data
		}
		check := func(kind string, data []byte, wantVersion uint64) {
			t.Helper()
			if v, err := gocar.ReadVersion(bytes.NewReader(data)); err != nil || v != wantVersion {
				t.Fatalf("%s %s: go-car wrote version %d (%v), want %d", dag.name, kind, v, err, wantVersion)
			}
			sink := &memSink{}
			res, err := car.Import(context.Background(), bytes.NewReader(data), pool, sink)
			if err != nil {
				t.Fatalf("%s %s: %v", dag.name, kind, err)
			}
			if len(res.Roots) != 1 || !res.Roots[0].Equals(dag.root) {
				t.Fatalf("%s %s: roots = %v, want [%s]", dag.name, kind, res.Roots, dag.root)
			}
			if len(sink.blocks) != len(want) {
				t.Fatalf("%s %s: %d blocks stored, want %d", dag.name, kind, len(sink.blocks), len(want))
			}
			for k, data := range want {
				if !bytes.Equal(sink.blocks[k], data) {
					t.Fatalf("%s %s: block %s missing or different", dag.name, kind, cid.MustParse([]byte(k)))
				}
			}
		}

		var v1 bytes.Buffer
		w, err := storage.NewWritable(&v1, []cid.Cid{dag.root}, gocar.WriteAsCarV1(true))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range dag.blocks {
			if err := w.Put(context.Background(), b.cid.KeyString(), b.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Finalize(); err != nil {
			t.Fatal(err)
		}
		check("CARv1", v1.Bytes(), 1)

		v2Variants := []struct {
			kind string
			opts []gocar.Option
		}{
			{"CARv2", nil},
			// Padding before the payload and the index, and the older
			// index format.
			{"CARv2 padded, car-index-sorted", []gocar.Option{gocar.UseDataPadding(13), gocar.UseIndexPadding(7), gocar.UseIndexCodec(multicodec.CarIndexSorted)}},
		}
		for _, v := range v2Variants {
			path := filepath.Join(t.TempDir(), dag.name+".car")
			bs, err := blockstore.OpenReadWrite(path, []cid.Cid{dag.root}, v.opts...)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range dag.blocks {
				blk, err := blocks.NewBlockWithCid(b.data, b.cid)
				if err != nil {
					t.Fatal(err)
				}
				if err := bs.Put(context.Background(), blk); err != nil {
					t.Fatal(err)
				}
			}
			if err := bs.Finalize(); err != nil {
				t.Fatal(err)
			}
			v2, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			check(v.kind, v2, 2)
		}
	}
}
