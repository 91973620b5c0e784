package kuborpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// TestKubo runs every typed call against real kubo daemons. The subtests
// run one after the other: RepoGC would collect the unpinned content of a
// subtest running beside it.
func TestKubo(t *testing.T) {
	t.Parallel()
	ds := startDaemons(t, 2)
	c := newClient(t, ds[0].URL())
	t.Run("ID", func(t *testing.T) { testID(t, c, ds[0]) })
	t.Run("RepoStat", func(t *testing.T) { testRepoStat(t, c) })
	t.Run("Pins", func(t *testing.T) { testPins(t, c, ds[0]) })
	t.Run("PinUpdate", func(t *testing.T) { testPinUpdate(t, c) })
	t.Run("PinLsStop", func(t *testing.T) { testPinLsStop(t, c) })
	t.Run("PinStall", func(t *testing.T) { testPinStall(t, c) })
	t.Run("RepoGC", func(t *testing.T) { testRepoGC(t, c) })
	t.Run("Resolve", func(t *testing.T) { testResolve(t, c) })
	t.Run("KuboErrors", func(t *testing.T) { testKuboErrors(t, c) })
	t.Run("Swarm", func(t *testing.T) { testSwarm(t, c, newClient(t, ds[1].URL()), ds[1]) })
}

func testID(t *testing.T, c *Client, d *kubotest.Daemon) {
	info, err := c.ID(context.Background())
	if err != nil {
		t.Fatalf("ID: %v", err)
	}
	if info.ID != d.PeerID {
		t.Errorf("ID = %q, want %q", info.ID, d.PeerID)
	}
	if len(info.Addresses) == 0 || !strings.HasSuffix(info.Addresses[0], "/p2p/"+d.PeerID) {
		t.Errorf("Addresses = %q, want swarm addresses ending in /p2p/%s", info.Addresses, d.PeerID)
	}
	if !strings.HasPrefix(info.AgentVersion, "kubo/"+kubotest.Version) {
		t.Errorf("AgentVersion = %q, want kubo/%s", info.AgentVersion, kubotest.Version)
	}
}

// testRepoStat: the repository grows by what is added, and the limit is
// the config's Datastore.StorageMax.
func testRepoStat(t *testing.T, c *Client) {
	before, err := c.RepoStat(context.Background())
	if err != nil {
		t.Fatalf("RepoStat: %v", err)
	}
	if before.RepoSize == 0 || before.StorageMax != 10_000_000_000 {
		t.Errorf("RepoStat = %+v, want a size and kubo's default 10GB limit", before)
	}
	addFiles(t, c, map[string]string{"big": strings.Repeat(t.Name(), 20000)})
	after, err := c.RepoStat(context.Background())
	if err != nil {
		t.Fatalf("RepoStat: %v", err)
	}
	if after.RepoSize < before.RepoSize+200_000 {
		t.Errorf("repo size went from %d to %d after adding 360 kB", before.RepoSize, after.RepoSize)
	}
}

// testPins pins a directory recursively and one file directly, lists them
// in every way, and unpins.
func testPins(t *testing.T, c *Client, d *kubotest.Daemon) {
	ctx := context.Background()
	k := addFiles(t, c, map[string]string{"d/a.txt": t.Name() + " a", "d/sub/b.txt": t.Name() + " b", "other.txt": t.Name() + " other"})
	root, sub, b, other := k["d"], k["d/sub"], k["d/sub/b.txt"], k["other.txt"]

	wantType := func(k cid.Cid, want string) {
		t.Helper()
		got, err := c.PinLsCid(ctx, k)
		if err != nil || got != want {
			t.Errorf("PinLsCid(%s) = %q, %v; want %q", k, got, err, want)
		}
	}
	wantType(root, "") // not pinned: no error

	if err := c.PinAdd(ctx, root, true, "the root", time.Minute); err != nil {
		t.Fatalf("PinAdd recursive: %v", err)
	}
	if err := c.PinAdd(ctx, other, false, "", time.Minute); err != nil {
		t.Fatalf("PinAdd direct: %v", err)
	}
	wantType(root, "recursive")
	wantType(sub, "indirect")
	wantType(b, "indirect")
	wantType(other, "direct")

	var named struct {
		Keys map[string]struct{ Name string }
	}
	if err := json.Unmarshal(d.Call(t, "pin/ls", url.Values{"arg": {root.String()}, "names": {"true"}}), &named); err != nil {
		t.Fatal(err)
	}
	if got := named.Keys[root.String()].Name; got != "the root" {
		t.Errorf("pin name = %q, want %q", got, "the root")
	}

	for _, tc := range []struct {
		typ        string
		want, not  cid.Cid
		wantPinTyp string
	}{
		{"recursive", root, other, "recursive"},
		{"direct", other, root, "direct"},
	} {
		got := map[cid.Cid]string{}
		err := c.PinLs(ctx, tc.typ, func(k cid.Cid, typ string) error {
			got[k] = typ
			return nil
		})
		if err != nil {
			t.Fatalf("PinLs(%s): %v", tc.typ, err)
		}
		if got[tc.want] != tc.wantPinTyp {
			t.Errorf("PinLs(%s) = %v, want %s listed as %s", tc.typ, got, tc.want, tc.wantPinTyp)
		}
		if _, ok := got[tc.not]; ok {
			t.Errorf("PinLs(%s) = %v, want %s not listed", tc.typ, got, tc.not)
		}
	}

	for _, k := range []cid.Cid{root, other} {
		if err := c.PinRm(ctx, k); err != nil {
			t.Fatalf("PinRm(%s): %v", k, err)
		}
		wantType(k, "")
		// Not pinned any more: still success.
		if err := c.PinRm(ctx, k); err != nil {
			t.Errorf("PinRm(%s) again: %v, want success", k, err)
		}
	}
}

// testPinUpdate moves a pin to another root and keeps the old one.
func testPinUpdate(t *testing.T, c *Client) {
	ctx := context.Background()
	v1 := addFiles(t, c, map[string]string{"d/a.txt": t.Name() + " 1", "d/same.txt": "same"})["d"]
	v2 := addFiles(t, c, map[string]string{"d/a.txt": t.Name() + " 2", "d/same.txt": "same"})["d"]
	if err := c.PinAdd(ctx, v1, true, "", time.Minute); err != nil {
		t.Fatalf("PinAdd: %v", err)
	}
	if err := c.PinUpdate(ctx, v1, v2); err != nil {
		t.Fatalf("PinUpdate: %v", err)
	}
	for _, k := range []cid.Cid{v1, v2} {
		if typ, err := c.PinLsCid(ctx, k); err != nil || typ != "recursive" {
			t.Errorf("PinLsCid(%s) = %q, %v; want recursive (unpin=false keeps the old pin)", k, typ, err)
		}
		if err := c.PinRm(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// pin/update needs its source pinned: kubo's error comes back.
	err := c.PinUpdate(ctx, v1, v2)
	var he *HTTPError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "pin/update "+v1.String()) || !strings.Contains(err.Error(), c.URL()) {
		t.Errorf("PinUpdate of an unpinned root: %v; want an HTTPError naming the call and %s", err, c.URL())
	}
}

// testPinLsStop: an error from the callback ends the listing and is
// returned as is.
func testPinLsStop(t *testing.T, c *Client) {
	ctx := context.Background()
	k := addFiles(t, c, map[string]string{"x": t.Name() + " x", "y": t.Name() + " y"})
	for _, f := range []string{"x", "y"} {
		if err := c.PinAdd(ctx, k[f], true, "", time.Minute); err != nil {
			t.Fatal(err)
		}
		defer c.PinRm(ctx, k[f])
	}
	stop := errors.New("enough")
	calls := 0
	err := c.PinLs(ctx, "recursive", func(cid.Cid, string) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Errorf("PinLs = %v after %d calls, want the callback's error after 1", err, calls)
	}
}

// testPinStall pins a CID that no daemon has: kubo looks for it forever,
// its progress never grows, and PinAdd gives up with ErrStalled.
func testPinStall(t *testing.T, c *Client) {
	missing := rawCid(t, []byte(t.Name()+" is nowhere"))
	err := c.PinAdd(context.Background(), missing, true, "", 300*time.Millisecond)
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), missing.String()) {
		t.Fatalf("PinAdd of a missing CID: %v, want ErrStalled naming it", err)
	}
	if IsPermanent(err) {
		t.Errorf("a stall is permanent; want it retried")
	}
	// Without a stall timer only the context ends it, with its cause.
	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(300*time.Millisecond, func() { cancel(cause) })
	if err := c.PinAdd(ctx, missing, true, "", 0); !errors.Is(err, cause) {
		t.Errorf("PinAdd without a stall timer: %v, want the context's cause", err)
	}
}

// testRepoGC adds a file without pinning it; the collector lists it.
func testRepoGC(t *testing.T, c *Client) {
	ctx := context.Background()
	k := addFiles(t, c, map[string]string{"loose": t.Name() + " loose", "kept": t.Name() + " kept"})
	if err := c.PinAdd(ctx, k["kept"], true, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	defer c.PinRm(ctx, k["kept"])
	var removed []cid.Cid
	err := c.RepoGC(ctx, func(key cid.Cid, errMsg string) {
		if errMsg != "" {
			t.Errorf("repo/gc reported %q", errMsg)
		}
		removed = append(removed, key)
	})
	if err != nil {
		t.Fatalf("RepoGC: %v", err)
	}
	// kubo names removed blocks by CIDv1 raw: compare multihashes.
	has := func(k cid.Cid) bool {
		return slices.ContainsFunc(removed, func(r cid.Cid) bool { return bytes.Equal(r.Hash(), k.Hash()) })
	}
	if !has(k["loose"]) || has(k["kept"]) {
		t.Errorf("RepoGC removed %v; want %s (unpinned) and not %s (pinned)", removed, k["loose"], k["kept"])
	}
}

func testResolve(t *testing.T, c *Client) {
	k := addFiles(t, c, map[string]string{"d/sub/b.txt": t.Name()})
	got, err := c.Resolve(context.Background(), "/ipfs/"+k["d"].String()+"/sub/b.txt")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if want := "/ipfs/" + k["d/sub/b.txt"].String(); got != want {
		t.Errorf("Resolve = %q, want %q", got, want)
	}
	_, err = c.Resolve(context.Background(), "/ipfs/"+k["d"].String()+"/nothing")
	var he *HTTPError
	if !errors.As(err, &he) || he.Message == "" || !strings.Contains(err.Error(), "/nothing") {
		t.Errorf("Resolve of a missing link: %v; want kubo's message, naming the path", err)
	}
}

// testKuboErrors: what real kubo answers to calls it refuses.
func testKuboErrors(t *testing.T, c *Client) {
	ctx := context.Background()
	// Not a command: a plain-text 404, which retrying would repeat.
	err := c.CallJSON(ctx, "no/such/command", nil, nil)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 404 || !IsPermanent(err) || !strings.Contains(err.Error(), c.URL()) {
		t.Errorf("unknown command: %v; want a permanent HTTP 404 naming %s", err, c.URL())
	}
	// An invalid option: kubo's {"Message"} is extracted.
	err = c.PinLs(ctx, "bogus", func(cid.Cid, string) error { return nil })
	if !errors.As(err, &he) || !strings.HasPrefix(he.Message, "invalid type 'bogus'") {
		t.Errorf("PinLs(bogus): %v; want kubo's message as HTTPError.Message", err)
	}
}

// testSwarm connects a to b and finds b among a's peers.
func testSwarm(t *testing.T, a, b *Client, bd *kubotest.Daemon) {
	ctx := context.Background()
	info, err := b.ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SwarmConnect(ctx, info.Addresses); err != nil {
		t.Fatalf("SwarmConnect: %v", err)
	}
	peers, err := a.SwarmPeers(ctx)
	if err != nil {
		t.Fatalf("SwarmPeers: %v", err)
	}
	if !slices.Contains(peers, bd.PeerID) {
		t.Errorf("SwarmPeers = %q, want %s", peers, bd.PeerID)
	}
	if err := a.SwarmConnect(ctx, nil); err == nil || !IsPermanent(err) {
		t.Errorf("SwarmConnect without addresses: %v, want a permanent error", err)
	}
}

// startDaemons starts n kubo daemons at once, each in its own repository.
func startDaemons(t testing.TB, n int) []*kubotest.Daemon {
	t.Helper()
	repos := make([]*kubotest.Repo, n)
	for i := range repos {
		repos[i] = kubotest.NewRepo(t)
	}
	ds := make([]*kubotest.Daemon, n)
	var wg sync.WaitGroup
	for i, r := range repos {
		wg.Go(func() { ds[i] = kubotest.StartDaemon(t, r) })
	}
	wg.Wait()
	for _, d := range ds {
		if d == nil {
			t.FailNow() // StartDaemon failed the test from its goroutine
		}
	}
	return ds
}

func newClient(t testing.TB, u string) *Client {
	t.Helper()
	c, err := New(u, nil)
	if err != nil {
		t.Fatalf("New(%q): %v", u, err)
	}
	return c
}

// addFiles adds files (path -> content; directories are implied by the
// paths) through kubo's own /api/v0/add, without pinning, as CIDv1 with
// raw leaves, and returns the CID of every file and directory by path.
func addFiles(t testing.TB, c *Client, files map[string]string) map[string]cid.Cid {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part := func(name, contentType, content string) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, url.PathEscape(name)))
		h.Set("Content-Type", contentType)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, content)
	}
	// kubo wants each directory before what it holds.
	dirs := map[string]bool{}
	paths := slices.Sorted(func(yield func(string) bool) {
		for p := range files {
			if !yield(p) {
				return
			}
		}
	})
	for _, p := range paths {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			if d := strings.Join(parts[:i], "/"); !dirs[d] {
				dirs[d] = true
				part(d, "application/x-directory", "")
			}
		}
		part(p, "application/octet-stream", files[p])
	}
	mw.Close()

	args := url.Values{"pin": {"false"}, "cid-version": {"1"}, "progress": {"false"}}
	resp, err := c.Post(context.Background(), "add", args, io.NopCloser(&body), mw.FormDataContentType())
	if err != nil {
		t.Fatalf("cannot add: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]cid.Cid{}
	r := NewLineReader(resp.Body)
	for {
		line, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("cannot read add answer: %v", err)
		}
		var ev struct{ Name, Hash string }
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("cannot decode add answer %q: %v", line, err)
		}
		k, err := cid.Decode(ev.Hash)
		if err != nil {
			t.Fatalf("cannot decode add answer %q: %v", line, err)
		}
		out[ev.Name] = k
	}
	for p := range files {
		if !out[p].Defined() {
			t.Fatalf("add answered %v, without %s", out, p)
		}
	}
	return out
}
