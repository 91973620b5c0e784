package blockfanout

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// fakeKubo is an HTTP server on 127.0.0.1 that answers /api/v0/id and
// /api/v0/repo/stat like kubo, and block/put and pin/add as the test says.
type fakeKubo struct {
	srv       *httptest.Server
	id        string
	blockPut  http.HandlerFunc
	pinAdd    http.HandlerFunc
	dagImport http.HandlerFunc // nil: 404, as a kubo without dag/import

	mu         sync.Mutex
	repoSize   uint64
	storageMax uint64
	puts       []time.Time // when each block/put request came
	idCalls    int         // /api/v0/id requests: liveness checks
	imports    int         // /api/v0/dag/import requests
}

func newFakeKubo(t testing.TB, id string, free uint64, blockPut http.HandlerFunc) *fakeKubo {
	t.Helper()
	k := &fakeKubo{id: id, storageMax: 10 << 30, repoSize: 10<<30 - free, blockPut: blockPut}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *fakeKubo) URL() string { return k.srv.URL }

func (k *fakeKubo) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/v0/id":
		k.mu.Lock()
		k.idCalls++
		k.mu.Unlock()
		writeJSON(w, map[string]any{"ID": k.id, "Addresses": []string{}})
	case "/api/v0/repo/stat":
		k.mu.Lock()
		size, max := k.repoSize, k.storageMax
		k.mu.Unlock()
		writeJSON(w, map[string]any{"RepoSize": size, "StorageMax": max})
	case "/api/v0/block/put":
		k.mu.Lock()
		k.puts = append(k.puts, time.Now())
		k.mu.Unlock()
		if k.blockPut == nil {
			http.NotFound(w, r)
			return
		}
		k.blockPut(w, r)
	case "/api/v0/dag/import":
		k.mu.Lock()
		k.imports++
		k.mu.Unlock()
		if k.dagImport == nil {
			http.NotFound(w, r)
			return
		}
		k.dagImport(w, r)
	case "/api/v0/pin/add":
		if k.pinAdd == nil {
			http.NotFound(w, r)
			return
		}
		k.pinAdd(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (k *fakeKubo) putTimes() []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]time.Time(nil), k.puts...)
}

// checks returns how many liveness checks k has answered.
func (k *fakeKubo) checks() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.idCalls
}

// setFree changes the free space k reports.
func (k *fakeKubo) setFree(free uint64) {
	k.mu.Lock()
	k.repoSize = k.storageMax - free
	k.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// kuboError answers as kubo does before any output: a status and
// {"Message","Code","Type"}.
func kuboError(status int, msg string, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"Message": msg, "Code": 0, "Type": "error"})
	}
}

// wrongAcks reads every part, then acknowledges each with the CID of other
// bytes.
func wrongAcks(w http.ResponseWriter, r *http.Request) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var acks []map[string]any
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
		data, _ := io.ReadAll(p)
		sum := sha256.Sum256(append(data, 'x'))
		h, _ := mh.Encode(sum[:], mh.SHA2_256)
		acks = append(acks, map[string]any{"Key": cid.NewCidV1(cid.Raw, h).String(), "Size": len(data)})
	}
	for _, a := range acks {
		writeJSON(w, a)
	}
}

// stallForever takes the whole body and never answers, until the client
// gives up.
func stallForever(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

// closedAddrs returns n 127.0.0.1 addresses where nothing listens (the
// listener was closed), so connections are refused.
func closedAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("cannot listen: %v", err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	return addrs
}

// throttleProxy forwards TCP connections on 127.0.0.1 to target, passing
// at most rate bytes per second from the client to target (answers are not
// limited). It closes everything at test cleanup, or after maxLife at the
// latest, so a hung test cannot leave it running.
type throttleProxy struct {
	ln     net.Listener
	target string
	rate   int

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func startThrottleProxy(t testing.TB, target string, rate int, maxLife time.Duration) *throttleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen: %v", err)
	}
	p := &throttleProxy{ln: ln, target: target, rate: rate}
	p.wg.Go(p.accept)
	stop := time.AfterFunc(maxLife, p.close)
	t.Cleanup(func() {
		stop.Stop()
		p.close()
	})
	return p
}

func (p *throttleProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *throttleProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// track registers c to be closed by close; false if already closed.
func (p *throttleProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *throttleProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			return
		}
		p.wg.Go(func() {
			throttledCopy(out, in, p.rate)
			out.(*net.TCPConn).CloseWrite()
		})
		p.wg.Go(func() {
			_, _ = io.Copy(in, out)
			in.Close()
		})
	}
}

// throttledCopy copies src to dst at about rate bytes per second. Idle
// time earns no credit, so a kept-alive connection is no faster.
func throttledCopy(dst io.Writer, src io.Reader, rate int) {
	buf := make([]byte, 16<<10)
	next := time.Now()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if now := time.Now(); next.Before(now) {
				next = now
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			next = next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(next))
		}
		if err != nil {
			return
		}
	}
}

// goodAcks acknowledges each part as soon as it has read it, as kubo does.
func goodAcks(w http.ResponseWriter, r *http.Request) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Connection", "close")
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return
		}
		h, _ := mh.Sum(data, mh.SHA2_256, -1)
		writeJSON(w, map[string]any{"Key": cid.NewCidV1(cid.Raw, h).String(), "Size": len(data)})
		_ = rc.Flush()
	}
}

// hideWriterTo makes the transport read request bodies through Read only.
type hideWriterTo struct{ rt http.RoundTripper }

func (h hideWriterTo) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r = r.Clone(r.Context())
		r.Body = struct{ io.ReadCloser }{r.Body}
	}
	return h.rt.RoundTrip(r)
}

// fakeID makes a recognisable fake kubo peer ID.
func fakeID(name string) string { return fmt.Sprintf("12D3KooWFake%s", name) }
