package restapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// ctlBinary is the real ipfs-cluster-ctl 1.1.6 (built by .ci/ctl.sh).
func ctlBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("INGESTD_CTL_BIN"); p != "" {
		return p
	}
	root, err := kubotest.RepoRoot()
	if err == nil {
		p := filepath.Join(root, ".cache", "bin", "ipfs-cluster-ctl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv(kubotest.EnvRequire) != "" {
		t.Fatal("ipfs-cluster-ctl not built: run bash .ci/ctl.sh")
	}
	t.Skip("ipfs-cluster-ctl not built: run bash .ci/ctl.sh")
	return ""
}

// ctl runs ipfs-cluster-ctl against ts and returns stdout, stderr, exit code.
func ctl(t *testing.T, ts *testServer, args ...string) (string, string, int) {
	t.Helper()
	host := "/ip4/127.0.0.1/tcp/" + ts.url[strings.LastIndex(ts.url, ":")+1:]
	cmd := exec.Command(ctlBinary(t), append([]string{"--host", host}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestClusterCtl drives ingestd with the real IPFS Cluster client, whose
// behaviour the wire spec was written from: every CID it prints must be
// kubo's, and its exit codes must say what they say against IPFS Cluster.
func TestClusterCtl(t *testing.T) {
	ts := startServer(t)
	files := map[string][]byte{
		"dir1/a.txt":     []byte("aaa\n"),
		"dir1/sub/b.txt": []byte("bbb\n"),
		"dir1/big.bin":   randBytes(3<<20, 77),
		"hello.txt":      []byte("hello world\n"),
	}
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, data, 0o644)
	}
	want := kuboHash(t, files, []string{"-r"}, "dir1", "hello.txt")

	out, stderr, code := ctl(t, ts, "add", "-r", filepath.Join(dir, "dir1"))
	if code != 0 {
		t.Fatalf("ctl add -r: exit %d: %s", code, stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line) // "added <cid> <name>"
		if len(f) != 3 || f[0] != "added" {
			t.Fatalf("ctl output %q", out)
		}
		got[f[2]] = f[1]
	}
	for _, name := range []string{"dir1/a.txt", "dir1/sub/b.txt", "dir1/big.bin", "dir1/sub", "dir1"} {
		if got[name] != want[name] {
			t.Errorf("%s: ctl printed %s, kubo %s", name, got[name], want[name])
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), " dir1") {
		t.Errorf("the root is not the last line: %q", out)
	}

	out, _, code = ctl(t, ts, "add", "-Q", filepath.Join(dir, "hello.txt"))
	if code != 0 || strings.TrimSpace(out) != want["hello.txt"] {
		t.Fatalf("ctl add -Q: exit %d, %q, kubo %s", code, out, want["hello.txt"])
	}
	out, _, code = ctl(t, ts, "pin", "ls", want["dir1"])
	if code != 0 || !strings.Contains(out, want["dir1"]) || !strings.Contains(out, "Recursive") {
		t.Fatalf("ctl pin ls: exit %d %q", code, out)
	}
	// A CID that is not pinned: IPFS Cluster's 404 error object, exit 2.
	out, stderr, code = ctl(t, ts, "pin", "ls", "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
	if code != 2 || !strings.Contains(out+stderr, "pin is not part of the pinset") {
		t.Fatalf("ctl pin ls of an unpinned CID: exit %d %q %q", code, out, stderr)
	}
	// A bad option: the error object reaches the user, exit 2.
	out, stderr, code = ctl(t, ts, "add", "--chunker", "size-0", filepath.Join(dir, "hello.txt"))
	if code != 2 || !strings.Contains(out+stderr, "chunker size must be greater than 0") {
		t.Fatalf("ctl add with a bad chunker: exit %d %q %q", code, out, stderr)
	}
	out, _, code = ctl(t, ts, "id")
	if code != 0 || !strings.Contains(out, testPeerID) {
		t.Fatalf("ctl id: exit %d %q", code, out)
	}
}
