package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingestd/ingestd/gateway"
	"github.com/ingestd/ingestd/localstore"
)

// testClient bounds every request of these tests, so that a wedged server
// fails the test instead of hanging it. It is not an assertion on speed.
var testClient = &http.Client{
	Timeout:   2 * time.Minute,
	Transport: &http.Transport{Proxy: nil, DisableCompression: true},
}

// mapStore is a Store in memory, keyed by multihash as localstore is.
type mapStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMapStore() *mapStore { return &mapStore{m: map[string][]byte{}} }

func (s *mapStore) put(c cid.Cid, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[string(c.Hash())] = data
}

func (s *mapStore) Get(_ context.Context, c cid.Cid) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[string(c.Hash())]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return bytes.Clone(d), nil
}

func (s *mapStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[string(c.Hash())]
	return ok, nil
}

func rawCid(t *testing.T, data []byte) cid.Cid {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs a Server for cfg on 127.0.0.1 and returns its base URL. The
// server is shut down when the test ends.
func serve(t *testing.T, cfg gateway.Config) string {
	t.Helper()
	srv, err := gateway.New(cfg)
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
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: cannot read body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestServeModes(t *testing.T) {
	store := newMapStore()
	data := []byte("hello gateway\n")
	c := rawCid(t, data)
	store.put(c, data)
	missing := rawCid(t, []byte("not stored"))
	trustless := serve(t, gateway.Config{Store: store})
	deserialized := serve(t, gateway.Config{Store: store, Deserialized: true})

	f := func(base, method, path, accept string, wantStatus int, wantBody []byte) {
		t.Helper()
		h := http.Header{}
		if accept != "" {
			h.Set("Accept", accept)
		}
		// Twice: nothing a request leaves behind may change the next.
		for range 2 {
			r := do(t, method, base+path, h)
			if r.status != wantStatus {
				t.Fatalf("%s %s (Accept %q): status %d, want %d: %s", method, path, accept, r.status, wantStatus, r.body)
			}
			if wantBody != nil && !bytes.Equal(r.body, wantBody) {
				t.Fatalf("%s %s (Accept %q): body %q, want %q", method, path, accept, r.body, wantBody)
			}
		}
	}
	p := "/ipfs/" + c.String()
	f(trustless, "GET", p+"?format=raw", "", 200, data)
	f(trustless, "GET", p, "application/vnd.ipld.raw", 200, data)
	f(trustless, "HEAD", p+"?format=raw", "", 200, []byte{})
	f(trustless, "GET", p+"?format=car", "", 200, nil)
	// Trustless only: a deserialized response is refused.
	f(trustless, "GET", p, "", 406, nil)
	f(deserialized, "GET", p, "", 200, data)
	f(deserialized, "GET", p+"?format=raw", "", 200, data)
	f(trustless, "GET", "/ipfs/"+missing.String()+"?format=raw", "", 404, nil)
	f(trustless, "GET", "/ipfs/not-a-cid?format=raw", "", 400, nil)
	// Only /ipfs/: names would need the network.
	f(deserialized, "GET", "/ipns/example.org", "", 404, nil)
	f(deserialized, "GET", "/", "", 404, nil)
	f(trustless, "POST", p, "", 405, nil)
}

// TestCorruptBlockIsNotServed damages a block in a real localstore's
// block log: the gateway answers 500 (localstore's ErrCorrupt) and never
// sends the bytes, in any mode.
func TestCorruptBlockIsNotServed(t *testing.T) {
	dir := t.TempDir()
	store, err := localstore.Open(dir, localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("a block the disk will damage. "), 200)
	c := rawCid(t, data)
	ctx := context.Background()
	if err := store.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// Flip one byte in the middle of the block, wherever the log put it.
	segs, err := filepath.Glob(filepath.Join(dir, "blocks", "*.log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment files: %v", err)
	}
	flipped := false
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, data); i >= 0 {
			b[i+len(data)/2] ^= 0x40
			if err := os.WriteFile(seg, b, 0o644); err != nil {
				t.Fatal(err)
			}
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("the block is in no segment file")
	}
	store, err = localstore.Open(dir, localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	base := serve(t, gateway.Config{Store: store, Deserialized: true})
	f := func(query string, wantStatus int) {
		t.Helper()
		r := do(t, "GET", base+"/ipfs/"+c.String()+query, nil)
		if r.status != wantStatus || bytes.Contains(r.body, data[:64]) {
			t.Fatalf("%q: status %d (want %d), body %.200q", query, r.status, wantStatus, r.body)
		}
	}
	f("?format=raw", 500)
	f("", 500)
	// boxo commits a CAR's 200 and header before reading the root (kubo
	// too, for a missing root); the block must still not follow.
	f("?format=car", 200)
}

func TestBasicAuth(t *testing.T) {
	store := newMapStore()
	data := []byte("secret data")
	c := rawCid(t, data)
	store.put(c, data)
	base := serve(t, gateway.Config{Store: store, BasicAuth: map[string]string{"alice": "s3cret", "bob": "pw:with:colons"}})
	url := base + "/ipfs/" + c.String() + "?format=raw"

	f := func(method, user, pass string, setAuth bool, wantStatus int) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if setAuth {
			req.SetBasicAuth(user, pass)
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s as %q/%q: status %d, want %d: %s", method, user, pass, resp.StatusCode, wantStatus, body)
		}
		if wantStatus == 401 {
			if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="Restricted IPFS Cluster API"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
			if bytes.Contains(body, data) {
				t.Fatalf("a 401 carried the data")
			}
		}
		if wantStatus == 200 && method == "GET" && !bytes.Equal(body, data) {
			t.Fatalf("body %q", body)
		}
	}
	f("GET", "", "", false, 401)
	f("HEAD", "", "", false, 401)
	f("GET", "alice", "s3cret", true, 200)
	f("HEAD", "alice", "s3cret", true, 200)
	f("GET", "bob", "pw:with:colons", true, 200)
	f("GET", "alice", "wrong", true, 401)
	f("GET", "alice", "s3cre", true, 401)
	f("GET", "alice", "", true, 401)
	f("GET", "mallory", "s3cret", true, 401)
	f("GET", "bob", "s3cret", true, 401)
	// Even a 404 needs credentials, as in the REST API.
	if r := do(t, "GET", base+"/ipns/x", nil); r.status != 401 {
		t.Fatalf("unauthenticated /ipns/: status %d, want 401", r.status)
	}
	// CORS preflights carry no credentials and pass.
	f("OPTIONS", "", "", false, 200)
}

func TestNewRejects(t *testing.T) {
	f := func(cfg gateway.Config, wantBadCredential bool) {
		t.Helper()
		_, err := gateway.New(cfg)
		if err == nil {
			t.Fatalf("New(%+v) accepted", cfg)
		}
		if got := errors.Is(err, gateway.ErrBadCredential); got != wantBadCredential {
			t.Fatalf("New: %v; ErrBadCredential %v, want %v", err, got, wantBadCredential)
		}
	}
	store := newMapStore()
	f(gateway.Config{}, false)
	f(gateway.Config{Store: store, BasicAuth: map[string]string{}}, false)
	f(gateway.Config{Store: store, BasicAuth: map[string]string{"": "pw"}}, true)
	f(gateway.Config{Store: store, BasicAuth: map[string]string{"u": ""}}, true)
	f(gateway.Config{Store: store, BasicAuth: map[string]string{"a:b": "pw"}}, true)
}

// blockingStore's Get for block waits for the request to be cancelled,
// then for release, so that a test can hold a request inside the store.
type blockingStore struct {
	*mapStore
	block     cid.Cid
	entered   chan struct{} // closed when Get of block starts
	cancelled chan struct{} // closed when its context ended
	release   chan struct{} // closed by the test
	returned  atomic.Bool
}

func (s *blockingStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	if !c.Equals(s.block) {
		return s.mapStore.Get(ctx, c)
	}
	close(s.entered)
	<-ctx.Done()
	close(s.cancelled)
	<-s.release
	s.returned.Store(true)
	return nil, ctx.Err()
}

func TestShutdownWaitsForRunningRequests(t *testing.T) {
	c := rawCid(t, []byte("slow block"))
	store := &blockingStore{
		mapStore: newMapStore(), block: c,
		entered: make(chan struct{}), cancelled: make(chan struct{}), release: make(chan struct{}),
	}
	srv, err := gateway.New(gateway.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	reqDone := make(chan error, 1)
	go func() {
		resp, err := testClient.Get("http://" + ln.Addr().String() + "/ipfs/" + c.String() + "?format=raw")
		if err == nil {
			resp.Body.Close()
		}
		reqDone <- err
	}()
	<-store.entered
	// The request is inside the store: a graceful stop cannot finish, so
	// the expired context makes Shutdown cut the connection, which cancels
	// the request; the store returns only once the test releases it.
	go func() {
		<-store.cancelled
		close(store.release)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	if !store.returned.Load() {
		t.Fatal("Shutdown returned while a request was still reading the store")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// The cut request fails or gets an error status; either way it ends.
	<-reqDone
}

// TestMetricsRegistry: boxo's gateway metrics go to the registry given,
// so that the daemon's /metrics, on its own registry, exports them.
func TestMetricsRegistry(t *testing.T) {
	store := newMapStore()
	data := []byte("counted")
	c := rawCid(t, data)
	store.put(c, data)
	reg := prometheus.NewRegistry()
	base := serve(t, gateway.Config{Store: store, MetricsRegistry: reg})
	if r := do(t, "GET", base+"/ipfs/"+c.String()+"?format=raw", nil); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
		if f.GetName() == "ipfs_http_gw_responses_total" {
			return
		}
	}
	t.Fatalf("no ipfs_http_gw_responses_total in the registry: %v", names)
}
