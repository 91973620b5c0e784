package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds ingestd once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ingestd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex // guards logs, written by the log reader
	logs *bytes.Buffer
	exit chan error
}

// logText returns what the process logged so far.
func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

var addrRe = regexp.MustCompile(`on (https?://127\.0\.0\.1:\d+)`)

// start runs the binary and waits for it to log its address.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startWith(t, exec.Command(bin, args...))
}

// startWith runs cmd, the binary or a wrapper that execs it, as start.
func startWith(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &bytes.Buffer{}, exit: make(chan error, 1)}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addrRe.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]: // the first address logged is the API's
				default:
				}
			}
		}
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	select {
	case a := <-found:
		p.url = a
	case err := <-p.exit:
		t.Fatalf("ingestd exited: %v\n%s", err, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("ingestd did not start\n%s", p.logs)
	}
	return p
}

func addFile(t *testing.T, url, name string, data []byte) string {
	t.Helper()
	c, msg := tryAdd(t, url, name, data)
	if c == "" {
		t.Fatalf("add: %s", msg)
	}
	return c
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestZeroConfigRunAndKill9: the binary starts with no configuration but a
// port, serves /health, pins an add, and after kill -9 a restart still has
// the pin: what was acknowledged survives.
func TestZeroConfigRunAndKill9(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	p := start(t, bin, "--data", data, "--listen", "127.0.0.1:0")
	if s := status(t, p.url+"/health"); s != 204 {
		t.Fatalf("/health = %d", s)
	}
	payload := bytes.Repeat([]byte("ingestd "), 200000)
	root := addFile(t, p.url, "f.txt", payload)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exit
	p = start(t, bin, "--data", data, "--listen", "127.0.0.1:0")
	if s := status(t, p.url+"/allocations/"+root); s != 200 {
		t.Fatalf("pin lost after kill -9: %d\n%s", s, p.logs)
	}
	// Graceful stop: SIGTERM exits 0.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exit:
		if err != nil {
			t.Fatalf("SIGTERM exit: %v\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestShutdownWaitsForInflightAdd: an add whose body is still arriving when
// SIGTERM comes is allowed to finish, and both of its files are pinned.
func TestShutdownWaitsForInflightAdd(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	p := start(t, bin, "--data", data, "--listen", "127.0.0.1:0")
	pr, pw := io.Pipe()
	w := multipart.NewWriter(pw)
	respc := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", p.url+"/add", pr)
		req.Header.Set("Content-Type", w.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(respc)
			return
		}
		respc <- resp
	}()
	// The server reports a file once the next one begins, and holds the
	// last output back until the add is pinned: with three files, "a" is
	// out once "c" begins.
	fw, _ := w.CreateFormFile("file", "a")
	fw.Write([]byte("first file"))
	fw, _ = w.CreateFormFile("file", "b")
	fw.Write([]byte("second file"))
	fw, _ = w.CreateFormFile("file", "c")
	resp := <-respc
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.Contains(first, `"name":"a"`) {
		t.Fatalf("first output %q: %v", first, err)
	}
	// The add is in flight with its body half sent: stop the server now.
	p.cmd.Process.Signal(syscall.SIGTERM)
	fw.Write([]byte("third file"))
	w.Close()
	pw.Close()
	rest, _ := io.ReadAll(br)
	if te := resp.Trailer.Get("X-Stream-Error"); te != "" || !strings.Contains(string(rest), `"name":"b"`) || !strings.Contains(string(rest), `"name":"c"`) {
		t.Fatalf("in-flight add did not finish: %q %q\n%s", rest, te, p.logText())
	}
	if err := <-p.exit; err != nil {
		t.Fatalf("exit: %v", err)
	}
	p = start(t, bin, "--data", data, "--listen", "127.0.0.1:0")
	lines := append([]string{first}, strings.Split(strings.TrimSpace(string(rest)), "\n")...)
	if len(lines) != 3 {
		t.Fatalf("outputs %q; want a, b and c", lines)
	}
	for _, line := range lines {
		var o struct{ Cid string }
		if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &o); err != nil || o.Cid == "" {
			t.Fatalf("output %q: %v", line, err)
		}
		if s := status(t, p.url+"/allocations/"+o.Cid); s != 200 {
			t.Fatalf("%s: add finished during shutdown was not pinned: %d", o.Cid, s)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	os.WriteFile(file, []byte(`{"data":"/from/file","listen":"127.0.0.1:1","peername":"file"}`), 0o600)
	env := map[string]string{"INGESTD_CONFIG": file, "INGESTD_LISTEN": "127.0.0.1:2"}
	c, err := loadConfig([]string{"--peername", "flag"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "/from/file" || c.Listen != "127.0.0.1:2" || c.PeerName != "flag" {
		t.Fatalf("%+v", c)
	}
	os.WriteFile(file, []byte(`{"lisen":"typo"}`), 0o600)
	if _, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "lisen") {
		t.Fatalf("unknown config key accepted: %v", err)
	}
	if _, err := loadConfig([]string{"--listen", "nonsense"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("bad listen address accepted")
	}
}

// TestNoFsyncSurvivesKill9: with --no-fsync, what was acknowledged still
// survives a crash of the process: the pins and the blocks of every add
// answered before a kill -9 are there after a restart.
func TestNoFsyncSurvivesKill9(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	p := start(t, bin, "--data", data, "--listen", "127.0.0.1:0", "--no-fsync")
	var roots []string
	for i := range 5 {
		roots = append(roots, addFile(t, p.url, "f.txt", bytes.Repeat([]byte{byte('a' + i)}, 300<<10+i)))
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exit
	p = start(t, bin, "--data", data, "--listen", "127.0.0.1:0")
	for _, root := range roots {
		if s := status(t, p.url+"/allocations/"+root); s != 200 {
			t.Fatalf("pin of %s lost after kill -9 with --no-fsync: %d\n%s", root, s, p.logText())
		}
		if s := status(t, p.url+"/pins/"+root); s != 200 {
			t.Fatalf("status of %s: %d", root, s)
		}
	}
}
