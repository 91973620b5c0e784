package kubotest

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// helloWorld's CIDs are independent of this package: the CIDv0 is the one
// the IPFS Cluster spec documents for "hello world\n", and the CIDv1 is the
// raw-leaf form of the same 12 bytes.
const (
	helloWorld      = "hello world\n"
	helloWorldCIDv0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
	helloWorldCIDv1 = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("cannot create directory: %v", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("cannot write %s: %v", path, err)
	}
}

func TestAddOnlyHashHelloWorld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hello.txt"), helloWorld)

	tests := []struct {
		name     string
		profiles []string
		flags    []string
		want     string
	}{
		{name: "default CIDv0", want: helloWorldCIDv0},
		{name: "cid-version=1", flags: []string{"--cid-version=1"}, want: helloWorldCIDv1},
		// The profile must reach kubo: unixfs-v1-2025 makes CIDv1 with raw
		// leaves the default, without any flag.
		{name: "profile unixfs-v1-2025", profiles: []string{"unixfs-v1-2025"}, want: helloWorldCIDv1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := NewRepo(t, tc.profiles...)
			got := r.AddOnlyHash(t, dir, tc.flags, "hello.txt")
			want := []AddEvent{{Name: "hello.txt", Hash: tc.want}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("AddOnlyHash = %+v, want %+v", got, want)
			}
		})
	}
}

func TestAddOnlyHashTree(t *testing.T) {
	t.Parallel()
	r := NewRepo(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "d", "a"), "a\n")
	// Spaces, a tab and a backslash exercise the CLI's name escaping.
	odd := "sub/b c\t\\x"
	writeFile(t, filepath.Join(dir, "d", filepath.FromSlash(odd)), helloWorld)

	got := r.AddOnlyHash(t, dir, []string{"-r"}, "d")
	var names []string
	for _, ev := range got {
		names = append(names, ev.Name)
	}
	wantNames := []string{"d/a", "d/" + odd, "d/sub", "d"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("names = %q, want %q", names, wantNames)
	}
	// Content addressing: the odd-named file has the same CID as hello.txt.
	if got[1].Hash != helloWorldCIDv0 {
		t.Errorf("CID of %q = %s, want %s", odd, got[1].Hash, helloWorldCIDv0)
	}
	// The root is last, and -Q (only the root) must agree with it.
	root := strings.TrimSpace(string(r.Run(t, nil, "add", "--only-hash", "-Q", "-r", filepath.Join(dir, "d"))))
	if got[3].Hash != root {
		t.Errorf("root CID = %s, -Q says %s", got[3].Hash, root)
	}
}

func TestParseAddOutput(t *testing.T) {
	t.Parallel()
	out := strings.Join([]string{
		`{"Name":"f","Bytes":262144}`, // progress event: dropped
		`{"Name":"f","Hash":"bafy1","Size":"12"}`,
		`added bafy2 name with spaces`,
		`added bafy3 tab\tq"b\\s`, // as kubo's EscNonPrint prints it
		`added bafy4 `,            // the wrapping directory of -w
		``,
	}, "\n")
	got, err := ParseAddOutput([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []AddEvent{
		{Name: "f", Hash: "bafy1", Size: "12"},
		{Name: "name with spaces", Hash: "bafy2"},
		{Name: "tab\tq\"b\\s", Hash: "bafy3"},
		{Name: "", Hash: "bafy4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseAddOutput = %+v, want %+v", got, want)
	}
	if _, err := ParseAddOutput([]byte("Error: nope\n")); err == nil {
		t.Error("ParseAddOutput accepted an error line")
	}
}

func TestRunErrIncludesStderr(t *testing.T) {
	t.Parallel()
	r := NewRepo(t)
	_, err := r.RunErr(nil, "config", "profile", "apply", "no-such-profile")
	if err == nil || !strings.Contains(err.Error(), "no-such-profile is not a profile") {
		t.Errorf("RunErr error = %v, want kubo's stderr in it", err)
	}
}

func TestOfflineConfig(t *testing.T) {
	t.Parallel()
	r := NewRepo(t, "default-networking")
	var cfg struct {
		Bootstrap []string
		Routing   struct{ Type string }
		Addresses struct {
			API, Gateway string
			Swarm        []string
		}
	}
	if err := json.Unmarshal(r.Run(t, nil, "config", "show"), &cfg); err != nil {
		t.Fatalf("cannot decode config: %v", err)
	}
	// default-networking restores public bootstrap peers and listen
	// addresses; NewRepo's loopback settings must still win.
	if len(cfg.Bootstrap) != 0 || cfg.Routing.Type != "none" ||
		cfg.Addresses.API != "/ip4/127.0.0.1/tcp/0" || cfg.Addresses.Gateway != "/ip4/127.0.0.1/tcp/0" ||
		!reflect.DeepEqual(cfg.Addresses.Swarm, []string{"/ip4/127.0.0.1/tcp/0"}) {
		t.Errorf("config not loopback-only: %+v", cfg)
	}
}

// blockPut stores data through the RPC API's multipart block/put and
// returns the CID kubo reports.
func blockPut(t *testing.T, d *Daemon, data string) string {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "block")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Post(d.URL()+"/api/v0/block/put", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatalf("cannot put block: %v", err)
	}
	defer resp.Body.Close()
	var put struct {
		Key  string
		Size int
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cannot put block: HTTP %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&put); err != nil {
		t.Fatalf("cannot decode block/put response: %v", err)
	}
	if put.Size != len(data) {
		t.Errorf("block/put Size = %d, want %d", put.Size, len(data))
	}
	return put.Key
}

func blockStatSize(t *testing.T, d *Daemon, key string) int {
	t.Helper()
	var stat struct {
		Key  string
		Size int
	}
	if err := json.Unmarshal(d.Call(t, "block/stat", url.Values{"arg": {key}}), &stat); err != nil {
		t.Fatalf("cannot decode block/stat response: %v", err)
	}
	if stat.Key != key {
		t.Errorf("block/stat Key = %s, want %s", stat.Key, key)
	}
	return stat.Size
}

func TestDaemon(t *testing.T) {
	t.Parallel()
	r := NewRepo(t)
	d := StartDaemon(t, r)

	if !strings.HasPrefix(d.APIAddr, "127.0.0.1:") {
		t.Errorf("APIAddr = %q, want loopback", d.APIAddr)
	}
	if want := r.PeerID(t); d.PeerID != want {
		t.Errorf("daemon PeerID = %s, config Identity.PeerID = %s", d.PeerID, want)
	}

	// block/put defaults to a raw CIDv1, which is exactly the raw-leaf CID
	// of the same bytes.
	key := blockPut(t, d, helloWorld)
	if key != helloWorldCIDv1 {
		t.Errorf("block/put Key = %s, want %s", key, helloWorldCIDv1)
	}
	if size := blockStatSize(t, d, key); size != len(helloWorld) {
		t.Errorf("block/stat Size = %d, want %d", size, len(helloWorld))
	}

	// With the daemon up the CLI forwards to it; the oracle must not change.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hello.txt"), helloWorld)
	if got := r.AddOnlyHash(t, dir, nil, "hello.txt"); len(got) != 1 || got[0].Hash != helloWorldCIDv0 {
		t.Errorf("AddOnlyHash via daemon = %+v, want %s", got, helloWorldCIDv0)
	}

	// Killing is what fault tests do; afterwards the API must be gone, and a
	// new daemon must start on the same repo (lock released, stale api file
	// ignored) with the same identity and the block still stored.
	d.Kill()
	if !d.Exited() {
		t.Fatal("daemon still running after Kill")
	}
	if _, err := d.CallErr(context.Background(), "id", nil); err == nil {
		t.Error("API still answers after Kill")
	}
	d2 := StartDaemon(t, r)
	if d2.PeerID != d.PeerID {
		t.Errorf("restarted PeerID = %s, want %s", d2.PeerID, d.PeerID)
	}
	if size := blockStatSize(t, d2, key); size != len(helloWorld) {
		t.Errorf("block/stat after restart Size = %d, want %d", size, len(helloWorld))
	}
}

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module github.com/ingestd/ingestd\n") {
		t.Errorf("RepoRoot = %s, whose go.mod is not ingestd's", root)
	}
}
