package bench

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

// benchSize is the upload size; INGESTD_BENCH_MIB overrides it.
func benchSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("INGESTD_BENCH_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 1 << 30
}

const boundary = "ingestdbenchboundary"

// writeInput writes random content to a file once, so that neither side
// pays for generating it and the client only copies a file into a socket.
func writeInput(b *testing.B, size int64) string {
	p := filepath.Join(b.TempDir(), "input.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(uint64(size), 3))
	var buf [8]byte
	for i := int64(0); i < size; i += 8 {
		v := r.Uint64()
		for j := range buf {
			buf[j] = byte(v >> (8 * j))
		}
		w.Write(buf[:])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return p
}

// setVariant makes the file at path the v-th variant of the benchmark
// input: the first 8 bytes of every 256 KiB are v. Every chunk of every
// variant is new to a store that holds the others, so repeated adds store
// every block (both kubo and ingestd skip blocks they already have, which
// would turn all but the first add into lookups).
func setVariant(b *testing.B, path string, v uint64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	var tag [8]byte
	binary.BigEndian.PutUint64(tag[:], v)
	for off := int64(0); off+8 <= st.Size(); off += 256 << 10 {
		if _, err := f.WriteAt(tag[:], off); err != nil {
			b.Fatal(err)
		}
	}
}

// post sends the file as one multipart part and returns the last JSON
// object of the response. By default the client is as cheap as a client
// can be, so that on a shared machine the figure is the server's: a
// Content-Length request whose file bytes go to the socket by sendfile(2),
// as a pipeline uploading files would send them (curl -F also sends a
// Content-Length). INGESTD_BENCH_CLIENT=chunked sends it instead as the
// cluster Go client does: chunked, every byte copied through net/http.
func post(b *testing.B, url, path string) map[string]any {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	var resp *http.Response
	if os.Getenv("INGESTD_BENCH_CLIENT") == "chunked" {
		body := io.MultiReader(stringsReader(head), struct{ io.Reader }{f}, stringsReader(tail))
		req, _ := http.NewRequest("POST", url, body)
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		resp, err = http.DefaultClient.Do(req)
	} else {
		resp, err = sendfilePost(url, f, head, tail)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var last map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			b.Fatal(err)
		}
		last = m
	}
	if resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" {
		b.Fatalf("%s: status %d, trailer %q", url, resp.StatusCode, resp.Trailer.Get("X-Stream-Error"))
	}
	return last
}

// sendfilePost writes the request by hand on a new connection: headers and
// the part's head, then the file with (*net.TCPConn).ReadFrom, which is
// sendfile(2), then the closing boundary. The response is read while the
// body is still being sent, as both servers answer before the upload ends.
func sendfilePost(rawURL string, f *os.File, head, tail string) (*http.Response, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	n := int64(len(head)) + st.Size() + int64(len(tail))
	hdr := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: multipart/form-data; boundary=" + boundary +
		"\r\nContent-Length: " + strconv.FormatInt(n, 10) + "\r\nConnection: close\r\n\r\n"
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, hdr+head)
		if err == nil {
			_, err = conn.(*net.TCPConn).ReadFrom(f)
		}
		if err == nil {
			_, err = io.WriteString(conn, tail)
		}
		sent <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 64<<10), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body = &sentBody{ReadCloser: resp.Body, conn: conn, sent: sent}
	return resp, nil
}

// sentBody closes the connection once the response has been read and
// reports a failed send as a read error.
type sentBody struct {
	io.ReadCloser
	conn net.Conn
	sent chan error
}

func (s *sentBody) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if err == io.EOF {
		if serr := <-s.sent; serr != nil {
			s.sent <- serr
			return n, serr
		}
		s.sent <- nil
	}
	return n, err
}

func (s *sentBody) Close() error {
	s.ReadCloser.Close()
	return s.conn.Close()
}

func stringsReader(s string) io.Reader { return &stringReader{s: s} }

type stringReader struct{ s string }

func (r *stringReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

// startIngestd runs the real server on 127.0.0.1; noFsync is --no-fsync.
func startIngestd(b *testing.B, noFsync bool) string {
	store, err := localstore.Open(b.TempDir(), localstore.Options{NoSync: noFsync})
	if err != nil {
		b.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	srv, err := restapi.New(restapi.Config{PeerID: "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw", Store: store, Pins: pinner.NewStore(store.Datastore(), pinner.StoreOptions{}), Pool: pool})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(); pool.Stop(); store.Close() })
	return serve(b, srv)
}

// serve runs srv on a random 127.0.0.1 port.
func serve(b *testing.B, srv *restapi.Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String()
}

// BenchmarkAddHTTP: the same uploads to ingestd and to kubo, same run; op
// i of every case uploads variant i of the input (setVariant), so that
// every add stores every block, and each variant's roots are compared.
// kubo runs with its default store (flatfs, sync false: nothing is
// fsynced); "ingestd/add" fsyncs before acknowledging, "add-no-fsync" is
// the kubo-equivalent durability (--no-fsync).
func BenchmarkAddHTTP(b *testing.B) {
	size := benchSize()
	input := writeInput(b, size)
	ing := startIngestd(b, false)
	ingNoFsync := startIngestd(b, true)
	d := kubotest.StartDaemon(b, kubotest.NewRepo(b))
	cids := map[string]any{}
	nextVariant := map[string]uint64{}
	for _, c := range []struct{ name, url string }{
		{"kubo/add", d.URL() + "/api/v0/add?progress=false"},
		{"ingestd/add", ing + "/add"},
		{"ingestd/add-no-fsync", ingNoFsync + "/add"},
		{"kubo/only-hash", d.URL() + "/api/v0/add?progress=false&only-hash=true"},
		{"ingestd/only-hash", ing + "/add?only-hash=true"},
	} {
		// Start every case with the disk idle: kubo does not fsync, and
		// its adds' dirty pages would otherwise be written back during
		// the next case and slow whichever side runs then.
		syscall.Sync()
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			// Continued across -count runs: a store never sees a variant
			// twice, and case k of every side gets the same variants.
			v := nextVariant[c.name]
			defer func() { nextVariant[c.name] = v }()
			for b.Loop() {
				b.StopTimer()
				setVariant(b, input, v)
				b.StartTimer()
				last := post(b, c.url, input)
				root := last["cid"]
				if root == nil {
					root = last["Hash"]
				}
				cids[c.name+"#"+strconv.FormatUint(v, 10)] = root
				v++
			}
		})
	}
	// Both must have built the same DAG, or the comparison means nothing.
	for _, pair := range [][2]string{{"kubo/add", "ingestd/add"}, {"kubo/add", "ingestd/add-no-fsync"}, {"kubo/only-hash", "ingestd/only-hash"}} {
		for v := 0; ; v++ {
			k, okk := cids[pair[0]+"#"+strconv.Itoa(v)]
			i, oki := cids[pair[1]+"#"+strconv.Itoa(v)]
			if !okk || !oki {
				break
			}
			if k != i {
				b.Fatalf("roots of variant %d differ: %s %v, %s %v", v, pair[0], k, pair[1], i)
			}
		}
	}
}

// BenchmarkSHA256AllCores is the machine's SHA-256 rate with every core
// hashing 256 KiB buffers: the ceiling for only-hash adds. One op hashes
// the benchmark's upload size once, split across GOMAXPROCS goroutines.
func BenchmarkSHA256AllCores(b *testing.B) {
	size := benchSize()
	workers := runtime.GOMAXPROCS(0)
	b.SetBytes(size)
	for b.Loop() {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Go(func() {
				buf := make([]byte, 256<<10)
				for n := int64(0); n < size/int64(workers); n += int64(len(buf)) {
					sha256.Sum256(buf)
				}
			})
		}
		wg.Wait()
	}
}
