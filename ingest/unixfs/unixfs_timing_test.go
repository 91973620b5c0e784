package unixfs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	ihelper "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/ingestd/ingestd/ingest"
)

var (
	benchOnce sync.Once
	benchData []byte
)

// benchInput is 256 MiB of random data, made once per process.
func benchInput() []byte {
	benchOnce.Do(func() {
		benchData = make([]byte, 256<<20)
		r := rand.New(rand.NewPCG(7, 7))
		for i := 0; i+8 <= len(benchData); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j++ {
				benchData[i+j] = byte(v >> (8 * j))
			}
		}
	})
	return benchData
}

// nullDAG drops every node, so that neither side pays for storage.
type nullDAG struct{}

func (nullDAG) Add(context.Context, ipld.Node) error                       { return nil }
func (nullDAG) AddMany(context.Context, []ipld.Node) error                 { return nil }
func (nullDAG) Get(context.Context, cid.Cid) (ipld.Node, error)            { return nil, ipld.ErrNotFound{} }
func (nullDAG) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption { return nil }
func (nullDAG) Remove(context.Context, cid.Cid) error                      { return nil }
func (nullDAG) RemoveMany(context.Context, []cid.Cid) error                { return nil }

// BenchmarkImport256MiB compares our file builder with boxo's importer (what
// kubo and IPFS Cluster run) on the same 256 MiB input in the same run:
// `go test -run '^$' -bench Import256MiB -benchtime 3x ./ingest/unixfs`.
func BenchmarkImport256MiB(b *testing.B) {
	data := benchInput()
	profiles := []struct{ name, profile string }{{"default", ""}, {"unixfs-v1-2025", ProfileV1}}
	for _, p := range profiles {
		o := DefaultOptions()
		if p.profile != "" {
			if err := o.ApplyProfile(p.profile); err != nil {
				b.Fatal(err)
			}
		}
		if err := o.Resolve(); err != nil {
			b.Fatal(err)
		}
		var want cid.Cid
		b.Run(p.name+"/boxo", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				spl, _ := chunker.FromString(bytes.NewReader(data), o.Chunker)
				params := ihelper.DagBuilderParams{Dagserv: nullDAG{}, RawLeaves: o.RawLeaves, Maxlinks: o.MaxFileLinks, CidBuilder: o.CidBuilder()}
				db, err := params.New(spl)
				if err != nil {
					b.Fatal(err)
				}
				nd, err := balanced.Layout(db)
				if err != nil {
					b.Fatal(err)
				}
				want = nd.Cid()
			}
		})
		b.Run(p.name+"/ingestd", func(b *testing.B) {
			pool := ingest.NewHashPool(0)
			defer pool.Stop()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				root, err := buildFile(context.Background(), bytes.NewReader(data), &o, pool, ingest.DiscardSink{}, 0, time.Time{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if want.Defined() && root.cid != want {
					b.Fatalf("root %s differs from boxo's %s", root.cid, want)
				}
			}
		})
	}
}
