package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingestd/ingestd/internal/disktest"
)

// tryAdd posts one file to /add and returns the root CID, or the error the
// server reported (status or X-Stream-Error trailer).
func tryAdd(t *testing.T, url, name string, data []byte) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("file", name)
	fw.Write(data)
	w.Close()
	resp, err := http.Post(url+"/add", w.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("cannot read the add's response: %v", err)
	}
	if resp.StatusCode != 200 {
		return "", fmt.Sprintf("%d %s", resp.StatusCode, raw)
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return "", e
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var o struct{ Cid string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &o); err != nil || o.Cid == "" {
		t.Fatalf("add answered %q: %v", raw, err)
	}
	return o.Cid, ""
}

// pinned returns the CIDs GET /pins lists.
func pinned(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url + "/pins")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 204 {
		t.Fatalf("GET /pins: %d", resp.StatusCode)
	}
	var cids []string
	dec := json.NewDecoder(resp.Body)
	for {
		var p struct{ Cid string }
		if err := dec.Decode(&p); err == io.EOF {
			return cids
		} else if err != nil {
			t.Fatalf("GET /pins: %v", err)
		}
		cids = append(cids, p.Cid)
	}
}

// stop sends SIGTERM and waits for the process to exit; the test's
// deadline, not a timer of its own, bounds the wait.
func stop(t *testing.T, p *proc) {
	t.Helper()
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exit:
		if err != nil {
			t.Fatalf("ingestd exited with %v after SIGTERM\n%s", err, p.logText())
		}
	case <-ctx.Done():
		t.Fatalf("ingestd did not exit after SIGTERM before the test's deadline\n%s", p.logText())
	}
}

// TestOutOfSpace runs the binary on a real 40 MiB tmpfs (issue 11): an add
// that fills it fails with the read-only error and pins nothing; the server
// still answers; a second add is refused without writing, even with room
// again; the failure is logged once; SIGTERM stops it; a restart on the
// still-full disk serves reads and refuses writes; a restart with room
// takes adds again.
func TestOutOfSpace(t *testing.T) {
	mnt := disktest.MountTmpfs(t, "40m")
	spare := filepath.Join(mnt, "spare")
	if err := os.WriteFile(spare, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(mnt, "data")
	bin := buildBinary(t)
	args := []string{"--data", data, "--listen", "127.0.0.1:0", "--gateway", "off"}
	random := func(seed uint64, n int) []byte {
		b := make([]byte, n)
		rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
		return b
	}

	p := start(t, bin, args...)
	small := addFile(t, p.url, "small", random(1, 1000))
	if c, msg := tryAdd(t, p.url, "big", random(2, 64<<20)); c != "" || !strings.Contains(msg, "read-only") || !strings.Contains(msg, "no space left on device") {
		t.Fatalf("the add that fills the disk: cid %q, error %q; want the read-only error with ENOSPC", c, msg)
	}
	if got := pinned(t, p.url); len(got) != 1 || got[0] != small {
		t.Fatalf("pins after the failed add: %v, want only %s", got, small)
	}
	if s := status(t, p.url+"/id"); s != 200 {
		t.Fatalf("GET /id: %d", s)
	}
	// Room again: a write attempted now would succeed and show on disk.
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	used := disktest.UsedBytes(t, data)
	// Refused before the upload is read: 507 Insufficient Storage.
	if c, msg := tryAdd(t, p.url, "second", random(3, 1000)); c != "" || !strings.HasPrefix(msg, "507 ") || !strings.Contains(msg, "read-only") {
		t.Fatalf("an add after the failure: cid %q, error %q; want the read-only error", c, msg)
	}
	if got := disktest.UsedBytes(t, data); got != used {
		t.Fatalf("the refused add wrote: %d bytes used before, %d after", used, got)
	}
	if got := pinned(t, p.url); len(got) != 1 {
		t.Fatalf("pins after the refused add: %v", got)
	}
	stop(t, p)
	logs := p.logText()
	if n := strings.Count(logs, "localstore: a write failed"); n != 1 {
		t.Fatalf("%d store log lines about the failure, want 1:\n%s", n, logs)
	}
	// Start, two adds, two failures, a few shutdown lines: a loop would
	// log thousands.
	if n := strings.Count(logs, "\n"); n > 12 {
		t.Fatalf("%d log lines:\n%s", n, logs)
	}

	// Restart on the still-full disk.
	disktest.Fill(t, spare)
	p = start(t, bin, args...)
	if !strings.Contains(p.logText(), "opened read-only") {
		t.Fatalf("the startup log does not say the store is read-only:\n%s", p.logText())
	}
	if got := pinned(t, p.url); len(got) != 1 || got[0] != small {
		t.Fatalf("pins after a restart on a full disk: %v, want only %s", got, small)
	}
	if s := status(t, p.url+"/pins/"+small); s != 200 {
		t.Fatalf("GET /pins/%s: %d", small, s)
	}
	if c, msg := tryAdd(t, p.url, "third", random(4, 1000)); c != "" || !strings.Contains(msg, "read-only") || !strings.Contains(msg, "no space left on device") {
		t.Fatalf("an add on a full disk: cid %q, error %q; want the read-only error with ENOSPC", c, msg)
	}
	stop(t, p)

	// Room again, and a restart: adds work.
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	p = start(t, bin, args...)
	third := addFile(t, p.url, "third", random(4, 1000))
	if got := pinned(t, p.url); len(got) != 2 {
		t.Fatalf("pins after the add with room: %v, want %s and %s", got, small, third)
	}
	stop(t, p)
}
