//go:build hostile

// The hostile-client suite (issue 11, docs/reliability.md): the real
// binary against clients that hold connections, send nothing, send too
// slowly or never read. `make hostile` runs it (part of `make test`);
// every limit is set small by its flag so that each case ends in seconds.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var hostileBin struct {
	once sync.Once
	path string
	err  error
}

// binary builds ingestd once for the whole suite.
func binary(t *testing.T) string {
	t.Helper()
	hostileBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "ingestd-hostile")
		if err != nil {
			hostileBin.err = err
			return
		}
		hostileBin.path = filepath.Join(dir, "ingestd")
		out, err := exec.Command("go", "build", "-o", hostileBin.path, ".").CombinedOutput()
		if err != nil {
			hostileBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if hostileBin.err != nil {
		t.Fatal(hostileBin.err)
	}
	return hostileBin.path
}

// failSafe is how long a client waits for the server to act on a limit of
// a second or less before the test fails: a detector of a server that
// never acts, not a measure of how fast it does.
const failSafe = time.Minute

func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reads until the server ends the connection and returns
// what it sent; it fails the test if the server keeps it open.
func closedByServer(t *testing.T, c net.Conn, what string) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(failSafe))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open", what)
	}
	return b
}

// TestHostileSlowRequests: connections that send nothing, a request line
// ended by a bare LF, headers that never end, and bodies shorter than
// their Content-Length are closed after the header timeout; the server
// answers others throughout.
func TestHostileSlowRequests(t *testing.T) {
	p := start(t, binary(t), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--header-timeout", "300ms")
	addr := strings.TrimPrefix(p.url, "http://")
	for _, c := range []struct{ name, send, answer string }{
		{"nothing", "", ""},
		{"bare LF request line", "GET /id HTTP/1.1\n", ""},
		{"unended headers", "GET /id HTTP/1.1\r\nHost: x\r\nX-A: b\r\n", ""},
		{"short body", "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{}", `{"code":408,`},
		{"huge header", "GET /id HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", `{"code":431,`},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dialFrom(t, "127.0.0.1", addr)
			io.WriteString(conn, c.send)
			// An answer, when there is one, is IPFS Cluster's error object.
			if got := closedByServer(t, conn, c.name); !bytes.Contains(got, []byte(c.answer)) {
				t.Fatalf("%s: answered %q, want %s", c.name, got, c.answer)
			}
			if s := status(t, p.url+"/id"); s != 200 {
				t.Fatalf("/id = %d after %s", s, c.name)
			}
		})
	}
}

// TestHostileShortUpload: an add whose Content-Length promises far more
// than it sends fails with the stall error after the stall timeout, and
// nothing is pinned.
func TestHostileShortUpload(t *testing.T) {
	p := start(t, binary(t), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--stall-timeout", "300ms")
	ct, body := multipartBody(t, map[string][]byte{"f": bytes.Repeat([]byte("x"), 256<<10)})
	conn := dialFrom(t, "127.0.0.1", strings.TrimPrefix(p.url, "http://"))
	fmt.Fprintf(conn, "POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, 10<<20)
	conn.Write(body[:len(body)/2])
	resp := closedByServer(t, conn, "short upload")
	if !bytes.Contains(resp, []byte("upload stalled")) {
		t.Fatalf("short upload answered %q", resp)
	}
	expectNoPinsAt(t, p.url)
}

// TestHostileConnectionLimits: idle connections over the per-address
// limit are answered 429, over the total 503, each with IPFS Cluster's
// error object; closing some lets new clients in.
func TestHostileConnectionLimits(t *testing.T) {
	p := start(t, binary(t), "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--max-connections", "8", "--max-connections-per-ip", "4", "--header-timeout", "1h")
	addr := strings.TrimPrefix(p.url, "http://")
	var held []net.Conn
	for range 4 {
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	refusal := func(from string, code int) {
		t.Helper()
		// The held connections are counted once accepted: poll until
		// the extra one is refused.
		for {
			c := dialFrom(t, from, addr)
			io.WriteString(c, "GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("from %s: %v", from, err)
			}
			raw, _ := io.ReadAll(resp.Body)
			c.Close()
			if resp.StatusCode == 200 {
				continue
			}
			var e struct{ Code int }
			if resp.StatusCode != code || json.Unmarshal(raw, &e) != nil || e.Code != code || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("from %s: %d %v %q, want %d with an error object", from, resp.StatusCode, resp.Header, raw, code)
			}
			return
		}
	}
	refusal("127.0.0.1", 429)
	for range 4 {
		held = append(held, dialFrom(t, "127.0.0.2", addr))
	}
	refusal("127.0.0.3", 503)
	for _, c := range held {
		c.Close()
	}
	if s := status(t, p.url+"/id"); s != 200 {
		t.Fatalf("/id = %d after the idle connections closed", s)
	}
}

// TestHostileOutOfFileDescriptors: with far more idle connections than
// file descriptors the daemon keeps running (accept backs off instead of
// ending Serve) and serves again once they close.
func TestHostileOutOfFileDescriptors(t *testing.T) {
	cmd := exec.Command("bash", "-c", `ulimit -n 128 && exec "$0" "$@"`, binary(t),
		"--data", t.TempDir(), "--listen", "127.0.0.1:0", "--header-timeout", "1h",
		"--max-connections", "100000", "--max-connections-per-ip", "-1")
	p := startWith(t, cmd)
	addr := strings.TrimPrefix(p.url, "http://")
	var held []net.Conn
	for i := 0; !strings.Contains(p.logText(), "cannot accept connections"); i++ {
		if i == 2000 {
			t.Fatalf("2000 idle connections and no accept error logged:\n%s", p.logText())
		}
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	select {
	case err := <-p.exit:
		t.Fatalf("ingestd exited when out of file descriptors: %v\n%s", err, p.logText())
	default:
	}
	for _, c := range held {
		c.Close()
	}
	if root := addFile(t, p.url, "after", []byte("served again")); root == "" {
		t.Fatal("no root")
	}
}

// TestHostileClientsHoldNoSlots: with one add slot, a client that never
// reads its add's output, and one that trickles its upload below the
// minimum rate, each lose their add instead of holding the slot: another
// client's add then runs.
func TestHostileClientsHoldNoSlots(t *testing.T) {
	p := start(t, binary(t), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--max-concurrent-adds", "1",
		"--write-timeout", "300ms", "--stall-timeout", "1s", "--min-upload-rate", "100000")
	addr := strings.TrimPrefix(p.url, "http://")
	t.Run("reads steadily", func(t *testing.T) {
		// The write timeout bounds each write, not the response: an add
		// whose output streams for longer than it, to a client that
		// reads, completes.
		ct, body := multipartBody(t, map[string][]byte{"steady": bytes.Repeat([]byte("r"), 4<<20)})
		pr, pw := io.Pipe()
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for len(body) > 0 {
				n := min(len(body), 512<<10)
				if _, err := pw.Write(body[:n]); err != nil {
					return
				}
				body = body[n:]
				<-tick.C
			}
			pw.Close()
		}()
		resp, err := http.Post(p.url+"/add?progress=true", ct, pr)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" || !bytes.Contains(raw, []byte(`"name":"steady","cid":"Qm`)) {
			t.Fatalf("steady add: %v %d %q %q", err, resp.StatusCode, resp.Trailer.Get("X-Stream-Error"), raw)
		}
	})
	t.Run("never reads", func(t *testing.T) {
		// 20,000 files with long names: megabytes of output lines, more
		// than the socket buffers hold, so the server's writes block.
		files := map[string][]byte{}
		for i := range 20000 {
			files[fmt.Sprintf("%0200d", i)] = []byte{byte(i)}
		}
		ct, body := multipartBody(t, files)
		conn := dialFrom(t, "127.0.0.1", addr)
		conn.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(conn, "POST /add?wrap-with-directory=true HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, len(body))
		go conn.Write(body)
		waitForLog(t, p, "add failed")
		if root := addFile(t, p.url, "next", []byte("after a client that never read")); root == "" {
			t.Fatal("no root")
		}
	})
	t.Run("trickles", func(t *testing.T) {
		ct, body := multipartBody(t, map[string][]byte{"slow": bytes.Repeat([]byte("s"), 1<<20)})
		conn := dialFrom(t, "127.0.0.1", addr)
		// What the server reads before the add starts arrives at once
		// (the header timeout bounds that part); then a byte every 100 ms,
		// never long enough apart for the stall timeout.
		fmt.Fprintf(conn, "POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, len(body))
		conn.Write(body[:256<<10])
		body = body[256<<10:]
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < len(body); i++ {
				if _, err := conn.Write(body[i : i+1]); err != nil {
					return
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
		}()
		if resp := closedByServer(t, conn, "trickle"); !bytes.Contains(resp, []byte("upload too slow")) {
			t.Fatalf("trickled upload answered %q", resp)
		}
		if root := addFile(t, p.url, "next", []byte("after a trickling client")); root == "" {
			t.Fatal("no root")
		}
	})
}

func waitForLog(t *testing.T, p *proc, s string) {
	t.Helper()
	for !strings.Contains(p.logText(), s) {
		select {
		case err := <-p.exit:
			t.Fatalf("ingestd exited: %v\n%s", err, p.logText())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func multipartBody(t *testing.T, files map[string][]byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for name, data := range files {
		fw, err := w.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

func expectNoPinsAt(t *testing.T, url string) {
	t.Helper()
	if s := status(t, url+"/allocations"); s != 204 {
		t.Fatalf("GET /allocations = %d: something was pinned", s)
	}
}
