package benchtool

import (
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

const testPeerID = "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw"

// startIngestd runs a real ingestd REST API (embedded store) on a random
// 127.0.0.1 port and returns its base URL.
func startIngestd(t *testing.T, mutate ...func(*restapi.Config)) string {
	t.Helper()
	store, err := localstore.Open(t.TempDir(), localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	cfg := restapi.Config{
		PeerID: testPeerID, Store: store, Pool: pool,
		Pins: pinner.NewStore(store.Datastore(), pinner.StoreOptions{}),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := restapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		pool.Stop()
		store.Close()
	})
	return "http://" + ln.Addr().String()
}

// closedURL is the URL of a port nothing listens on any more.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// bodyCid is a CIDv1 (raw) of the SHA-256 of b: what the fake targets
// answer, so that equal bodies get equal roots.
func bodyCid(b []byte) string {
	sum := sha256.Sum256(b)
	m, _ := mh.Encode(sum[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, m).String()
}

// recorder is a log of requests to fake targets, in arrival order.
type recorder struct {
	mu   sync.Mutex
	seen []string // "NAME:CID-OF-BODY"
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.seen = append(r.seen, s)
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// fakeCluster is an IPFS Cluster /add that reads the whole body and
// answers one AddedOutput whose CID hashes the body (with salt appended),
// after logging the request's arrival to rec.
func fakeCluster(t *testing.T, name string, rec *recorder, salt string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec != nil {
			rec.add(name)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"x","cid":"`+bodyCid(append(b, salt...))+`","size":1}`+"\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// fakeRaw is a target whose handler is h.
func fakeRaw(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func mustRun(t *testing.T, cfg Config) *Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func reportText(t *testing.T, rep *Report) string {
	t.Helper()
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
