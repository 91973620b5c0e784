package bench

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	mp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

type memBlock struct {
	c    cid.Cid
	data []byte
}

type collectSink struct {
	mu     sync.Mutex
	blocks []memBlock
}

func (s *collectSink) Put(_ context.Context, c cid.Cid, data []byte) error {
	s.mu.Lock()
	s.blocks = append(s.blocks, memBlock{c, data})
	s.mu.Unlock()
	return nil
}

// fileEntries yields one file entry for the DAG of the benchmark input.
type fileEntries struct {
	f    *os.File
	done bool
}

func (e *fileEntries) Next() (*mp.Entry, error) {
	if e.done {
		return nil, io.EOF
	}
	e.done = true
	return &mp.Entry{Path: "input.bin", Kind: mp.File, Body: e.f}, nil
}

// dagBlocks builds the input's DAG with the options the add will use
// (cid-version=1) and returns its blocks, for the direct baseline.
func dagBlocks(b *testing.B, path string) []memBlock {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	o := unixfs.DefaultOptions()
	o.CidVersion = 1
	if err := o.Resolve(); err != nil {
		b.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	defer pool.Stop()
	s := &collectSink{}
	if _, err := unixfs.Import(context.Background(), &fileEntries{f: f}, &o, pool, s, func(unixfs.Output) error { return nil }); err != nil {
		b.Fatal(err)
	}
	return s.blocks
}

// directPut streams blocks to one daemon's block/put in one multipart
// request, as a plain client would: the baseline.
func directPut(d *kubotest.Daemon, blocks []memBlock) error {
	pr, pw := io.Pipe()
	w := multipart.NewWriter(pw)
	go func() {
		for _, blk := range blocks {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, blk.c))
			h.Set("Content-Type", "application/octet-stream")
			part, err := w.CreatePart(h)
			if err == nil {
				_, err = part.Write(blk.data)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(w.Close())
	}()
	req, _ := http.NewRequest("POST", d.URL()+"/api/v0/block/put?cid-codec=raw&mhtype=sha2-256&pin=false&allow-big-block=true", pr)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" {
		return fmt.Errorf("block/put: %d %s", resp.StatusCode, resp.Trailer.Get("X-Stream-Error"))
	}
	return err
}

// BenchmarkPeersHTTP adds the benchmark input through ingestd's /add to 1
// and to 3 kubo daemons (blocks and pin), next to a plain client that
// streams the same DAG's blocks to each daemon's block/put directly and
// concurrently, in the same run. repo/gc runs, untimed, before every send
// so that the daemons store every block every time.
func BenchmarkPeersHTTP(b *testing.B) {
	size := benchSize()
	input := writeInput(b, size)
	blocks := dagBlocks(b, input)
	var ds []*kubotest.Daemon
	for i := 0; i < 3; i++ {
		ds = append(ds, kubotest.StartDaemon(b, kubotest.NewRepo(b)))
	}
	gc := func(targets []*kubotest.Daemon) {
		for _, d := range targets {
			// Unpin the previous add's root (absent the first time), then
			// collect, so that the next send stores every block again.
			_, _ = d.CallErr(context.Background(), "pin/rm", map[string][]string{"arg": {blocks[len(blocks)-1].c.String()}})
			d.Call(b, "repo/gc", nil)
		}
	}
	for _, n := range []int{1, 3} {
		targets := ds[:n]
		var pcs []blockfanout.PeerConfig
		for i, d := range targets {
			pcs = append(pcs, blockfanout.PeerConfig{Name: fmt.Sprint("kubo", i), URL: d.URL()})
		}
		f, err := blockfanout.New(blockfanout.Config{Peers: pcs})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		store, _ := localstore.Open(b.TempDir(), localstore.Options{})
		pool := ingest.NewHashPool(0)
		srv, err := restapi.New(restapi.Config{PeerID: "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw", Store: store, Pins: pinner.NewStore(store.Datastore(), pinner.StoreOptions{}), Pool: pool, Fanout: f})
		if err != nil {
			b.Fatal(err)
		}
		url := serve(b, srv)
		b.Run(fmt.Sprintf("%dpeers/direct-block-put", n), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				b.StopTimer()
				gc(targets)
				b.StartTimer()
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i, d := range targets {
					wg.Go(func() { errs[i] = directPut(d, blocks) })
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		// With no-pin=true an add does what the plain client does (every
		// block to every peer, every acknowledgement checked) plus
		// building the DAG; the full add also has each daemon pin the
		// DAG, which walks it in kubo: the daemons' work, not ingestd's.
		for _, c := range []struct{ name, query string }{
			{"ingestd-add-no-pin", "&no-pin=true"},
			{"ingestd-add", ""},
		} {
			b.Run(fmt.Sprintf("%dpeers/%s", n, c.name), func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					b.StopTimer()
					gc(targets)
					b.StartTimer()
					last := post(b, url+"/add?cid-version=1"+c.query, input)
					if last["cid"] != blocks[len(blocks)-1].c.String() {
						b.Fatalf("root %v, want %s", last["cid"], blocks[len(blocks)-1].c)
					}
				}
			})
		}
		srv.Shutdown()
		f.Stop()
		pool.Stop()
		store.Close()
	}
}
