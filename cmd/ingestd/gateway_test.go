package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
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

	car "github.com/ipld/go-car/v2"
)

// TestMain keeps every daemon these tests start off kubo's gateway port:
// the gateway is on by default at 127.0.0.1:8080, which parallel test
// runs, or a kubo on the same machine, would fight over. A test that
// wants the gateway passes --gateway 127.0.0.1:0, which beats this.
func TestMain(m *testing.M) {
	if os.Getenv("INGESTD_GATEWAY") == "" {
		os.Setenv("INGESTD_GATEWAY", gatewayOff)
	}
	os.Exit(m.Run())
}

// TestConfigGateway: the gateway's address and mode come from the file,
// the environment and the flags, in that increasing priority; "" in the
// file or as the flag turns it off, as "off" does anywhere.
func TestConfigGateway(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	f := func(fileJSON string, env map[string]string, args []string, wantAddr string, wantDeserialized bool) {
		t.Helper()
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		if fileJSON != "" {
			if err := os.WriteFile(file, []byte(fileJSON), 0o600); err != nil {
				t.Fatal(err)
			}
			e["INGESTD_CONFIG"] = file
		}
		c, err := loadConfig(args, envOf(e), io.Discard)
		if err != nil {
			t.Fatalf("file %s env %v args %q: %v", fileJSON, env, args, err)
		}
		if c.Gateway != wantAddr || c.GatewayDeserialized != wantDeserialized {
			t.Fatalf("file %s env %v args %q: gateway %q deserialized %v, want %q %v", fileJSON, env, args, c.Gateway, c.GatewayDeserialized, wantAddr, wantDeserialized)
		}
	}
	fileOn := `{"gateway":"127.0.0.1:1","gateway_deserialized":true}`
	envOn := map[string]string{"INGESTD_GATEWAY": "127.0.0.1:2", "INGESTD_GATEWAY_DESERIALIZED": "false"}

	f("", nil, nil, "127.0.0.1:8080", false)
	f(`{}`, nil, nil, "127.0.0.1:8080", false)
	f(fileOn, nil, nil, "127.0.0.1:1", true)
	f(`{"gateway":""}`, nil, nil, gatewayOff, false)
	f(`{"gateway":"off"}`, nil, nil, gatewayOff, false)
	f(fileOn, envOn, nil, "127.0.0.1:2", false)
	f(fileOn, map[string]string{"INGESTD_GATEWAY": "off"}, nil, gatewayOff, true)
	f(`{"gateway":""}`, envOn, nil, "127.0.0.1:2", false)
	f(fileOn, envOn, []string{"--gateway", "127.0.0.1:3", "--gateway-deserialized"}, "127.0.0.1:3", true)
	f(fileOn, envOn, []string{"--gateway", ""}, gatewayOff, false)
	f(fileOn, envOn, []string{"--gateway=off"}, gatewayOff, false)
	f(fileOn, nil, []string{"--gateway-deserialized=false"}, "127.0.0.1:1", false)
	// Peers and clusters keep their blocks in kubo: no gateway by default.
	f("", nil, []string{"--peer", "http://127.0.0.1:5001"}, gatewayOff, false)
	f("", map[string]string{"INGESTD_PEERS": "http://127.0.0.1:5001"}, []string{"--gateway", ""}, gatewayOff, false)
}

func TestConfigGatewayRejected(t *testing.T) {
	f := func(env map[string]string, args []string, wantInError string) {
		t.Helper()
		_, err := loadConfig(args, envOf(env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), wantInError) {
			t.Fatalf("env %v args %q: %v, want an error with %q", env, args, err, wantInError)
		}
	}
	f(nil, []string{"--gateway", "8080"}, `gateway address "8080"`)
	f(map[string]string{"INGESTD_GATEWAY": "nonsense"}, nil, `gateway address "nonsense"`)
	f(map[string]string{"INGESTD_GATEWAY_DESERIALIZED": "yes please"}, nil, "INGESTD_GATEWAY_DESERIALIZED")
	f(nil, []string{"--gateway", "127.0.0.1:9094"}, "both on 127.0.0.1:9094")
	f(nil, []string{"--peer", "http://127.0.0.1:5001", "--gateway", "127.0.0.1:8080"}, "not in the embedded store")
}

var gatewayLineRe = regexp.MustCompile(`IPFS gateway \(([^)]*)\) at (https?://127\.0\.0\.1:\d+)/ipfs/`)

// gatewayProc is a running daemon with its gateway.
type gatewayProc struct {
	cmd        *exec.Cmd
	apiURL     string
	gatewayURL string
	mode       string
	exit       chan error

	mu   sync.Mutex
	logs bytes.Buffer
}

func (p *gatewayProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startGateway runs the binary and waits until it has logged the API's
// and the gateway's addresses.
func startGateway(t *testing.T, bin string, args ...string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatewayProc{cmd: cmd, exit: make(chan error, 1)}
	type addrs struct{ api, gw, mode string }
	ready := make(chan addrs, 1)
	go func() {
		var a addrs
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addrRe.FindStringSubmatch(line); m != nil && a.api == "" {
				a.api = m[1]
			}
			if m := gatewayLineRe.FindStringSubmatch(line); m != nil && a.gw == "" {
				a.mode, a.gw = m[1], m[2]
				ready <- a
			}
		}
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.exit
		}
	})
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	select {
	case a := <-ready:
		p.apiURL, p.gatewayURL, p.mode = a.api, a.gw, a.mode
	case err := <-p.exit:
		t.Fatalf("ingestd exited: %v\n%s", err, p.log())
	case <-timer.C:
		t.Fatalf("ingestd did not start its gateway\n%s", p.log())
	}
	return p
}

// TestGatewayBinary: the built daemon serves the blocks of an add on its
// gateway with the API's users, byte-identical in the deserialized mode,
// and on SIGTERM lets a CAR download that is still running finish before
// it exits.
func TestGatewayBinary(t *testing.T) {
	bin := buildBinary(t)
	p := startGateway(t, bin, "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--gateway", "127.0.0.1:0", "--gateway-deserialized", "--basic-auth", "alice:secret")
	if p.mode != "trustless and deserialized" {
		t.Fatalf("gateway mode %q", p.mode)
	}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{Proxy: nil, DisableCompression: true}}

	// 32 MiB: 128 blocks, more than loopback's socket buffers hold, so
	// that the CAR below is still being written when SIGTERM comes.
	payload := make([]byte, 32<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "big.bin")
	fw.Write(payload)
	mw.Close()
	req, _ := http.NewRequest("POST", p.apiURL+"/add", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.SetBasicAuth("alice", "secret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct{ Cid string }
	if resp.StatusCode != 200 || json.Unmarshal(bytes.TrimSpace(raw), &out) != nil || out.Cid == "" {
		t.Fatalf("add: %d %q", resp.StatusCode, raw)
	}

	get := func(path, user, pass string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", p.gatewayURL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {"alice", "wrong"}, {"bob", "secret"}} {
		resp := get("/ipfs/"+out.Cid+"?format=raw", c.user, c.pass)
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="Restricted IPFS Cluster API"` {
			t.Fatalf("as %q/%q: %d %q", c.user, c.pass, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	resp = get("/ipfs/"+out.Cid, "alice", "secret")
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, payload) {
		t.Fatalf("file: %d, %d bytes (%v), want the %d added", resp.StatusCode, len(got), err, len(payload))
	}

	// boxo's gateway metrics are on the daemon's /metrics.
	req, _ = http.NewRequest("GET", p.apiURL+"/metrics", nil)
	req.SetBasicAuth("alice", "secret")
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(got, []byte("ipfs_http_gw_responses_total")) {
		t.Fatalf("/metrics: %d, no ipfs_http_gw_responses_total in %d bytes", resp.StatusCode, len(got))
	}

	// A CAR download in flight when SIGTERM comes finishes whole.
	resp = get("/ipfs/"+out.Cid+"?format=car", "alice", "secret")
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 1<<10)
	if resp.StatusCode != 200 {
		t.Fatalf("CAR: %d", resp.StatusCode)
	}
	if _, err := br.Peek(1 << 10); err != nil {
		t.Fatalf("CAR: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	blocks, err := car.NewBlockReader(br)
	if err != nil {
		t.Fatal(err)
	}
	n, size := 0, 0
	for {
		blk, err := blocks.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("CAR cut after %d blocks by the shutdown: %v\n%s", n, err, p.log())
		}
		n++
		size += len(blk.RawData())
	}
	if n != 129 || size < len(payload) {
		t.Fatalf("CAR of %d blocks, %d bytes; want the root and 128 leaves", n, size)
	}
	if err := <-p.exit; err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
	}
	if !strings.Contains(p.log(), "stopped") {
		t.Fatalf("no clean stop:\n%s", p.log())
	}
}

// TestGatewayBinaryTLS: with the API's certificate, the gateway speaks
// HTTPS only, as the API does.
func TestGatewayBinaryTLS(t *testing.T) {
	bin := buildBinary(t)
	certFile, keyFile, roots := writeTestCert(t)
	p := startGateway(t, bin, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--gateway", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(p.gatewayURL, "https://") || p.mode != "trustless: raw blocks and CARs" {
		t.Fatalf("gateway at %s (%s)", p.gatewayURL, p.mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The identity CID of "hi": served from the CID itself, no add needed.
	const idCid = "bafkqaatine"
	tlsClient := &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ := http.NewRequestWithContext(ctx, "GET", p.gatewayURL+"/ipfs/"+idCid+"?format=raw", nil)
	resp, err := tlsClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != "hi" {
		t.Fatalf("over TLS: %d %q", resp.StatusCode, got)
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", "http"+strings.TrimPrefix(p.gatewayURL, "https")+"/ipfs/"+idCid+"?format=raw", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP served the block")
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exit; err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
	}
}
