//go:build netns

package restapi

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/clusterapi"
	"github.com/ingestd/ingestd/internal/clustertest"
)

// These tests run ingestd in front of a real IPFS Cluster (3 peers of
// ipfs-cluster-service 1.1.6 with CRDT consensus, each with its own kubo),
// inside a loopback-only network namespace: make cluster-test, or
// bash .ci/netns-test.sh ./restapi -run Cluster.

// realFront starts an ingestd in front of cluster peer i, told where each
// peer's kubo API is.
func realFront(t *testing.T, c *clustertest.Cluster, i int) *testServer {
	t.Helper()
	kubo := map[string]string{}
	for _, p := range c.Peers {
		kubo[p.ID] = p.Kubo.URL()
	}
	return frontWith(t, c, i, kubo)
}

// frontWith starts an ingestd in front of cluster peer i with the given
// kubo overrides.
func frontWith(t *testing.T, c *clustertest.Cluster, i int, kubo map[string]string) *testServer {
	t.Helper()
	cl, err := clusterapi.New(clusterapi.Config{URL: c.Peers[i].URL()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := blockfanout.New(blockfanout.Config{Dynamic: true, CheckInterval: 200 * time.Millisecond, StallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return startServer(t, func(cfg *Config) {
		cfg.Fanout = f
		cfg.Cluster = &ClusterConfig{Client: cl, Kubo: kubo, SyncInterval: 200 * time.Millisecond}
	})
}

// clusterStatus is `ipfs-cluster-ctl status <cid>` against cluster peer 0:
// each cluster peer's status.
func clusterStatus(t *testing.T, c *clustertest.Cluster, root string) map[string]string {
	t.Helper()
	out := c.Ctl(t, 0, "--enc=json", "status", root)
	var g struct {
		PeerMap map[string]struct{ Status string } `json:"peer_map"`
	}
	if err := json.Unmarshal(out, &g); err != nil {
		t.Fatalf("ctl status: %q: %v", out, err)
	}
	st := map[string]string{}
	for id, pi := range g.PeerMap {
		st[id] = pi.Status
	}
	return st
}

func bitswapReceived(t *testing.T, c *clustertest.Cluster, i int) int {
	t.Helper()
	var st struct{ BlocksReceived int }
	json.Unmarshal(c.Peers[i].Kubo.Call(t, "bitswap/stat", nil), &st)
	return st.BlocksReceived
}

// TestClusterFront: adds through ingestd end pinned on exactly the
// allocated cluster peers, whose kubo daemons held every block before the
// pin (nothing fetched over bitswap); the pin options land in the
// cluster's pinset; the ctl through ingestd equals the ctl against the
// cluster; two ingestd instances add concurrently; a dead kubo is not
// allocated and the quorum holds; the cluster down is a 503.
func TestClusterFront(t *testing.T) {
	c := clustertest.Start(t, 3)
	fa, fb := realFront(t, c, 0), realFront(t, c, 1)
	ids := []string{c.Peers[0].ID, c.Peers[1].ID, c.Peers[2].ID}
	received := []int{bitswapReceived(t, c, 0), bitswapReceived(t, c, 1), bitswapReceived(t, c, 2)}

	// Two copies, the second peer first by user allocation, with every
	// pin option.
	data := randBytes(5<<20+123, 71)
	ct, b := body(part{name: "f.bin", body: data})
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	r := post(t, fa, fmt.Sprintf("replication-min=2&replication-max=2&user-allocations=%s&name=front&meta-team=ops&expire-at=%s",
		ids[2], exp.Format(time.RFC3339)), ct, b)
	if r.status != 200 || r.trailer != "" || len(r.outputs) == 0 {
		t.Fatalf("add through ingestd: %d %q %s", r.status, r.trailer, r.raw)
	}
	root := r.outputs[len(r.outputs)-1]["cid"].(string)
	if want := kuboHash(t, map[string][]byte{"f.bin": data}, nil, "f.bin")["f.bin"]; root != want {
		t.Fatalf("root %s; kubo says %s", root, want)
	}
	var allocated []string
	for _, a := range r.outputs[len(r.outputs)-1]["allocations"].([]any) {
		allocated = append(allocated, a.(string))
	}
	if len(allocated) != 2 || !slices.Contains(allocated, ids[2]) {
		t.Fatalf("root allocations %v; want 2 peers including %s", allocated, ids[2])
	}
	// The blocks are on the allocated kubo daemons when the root line comes.
	for i, id := range ids {
		blocks, _ := has(t, c.Peers[i].Kubo, root)
		if blocks != slices.Contains(allocated, id) {
			t.Fatalf("peer %d (%s): holds the blocks %v, allocated %v", i, id, blocks, allocated)
		}
	}
	clustertest.WaitFor(t, "the cluster to pin on the allocated peers", func() error {
		st := clusterStatus(t, c, root)
		for _, id := range ids {
			want := "remote"
			if slices.Contains(allocated, id) {
				want = "pinned"
			}
			if st[id] != want {
				return fmt.Errorf("status %v", st)
			}
		}
		return nil
	})
	for i := range ids {
		if n := bitswapReceived(t, c, i); n != received[i] {
			t.Fatalf("peer %d fetched %d blocks over bitswap; the add should have put them all", i, n-received[i])
		}
	}
	var pin struct {
		Name                 string
		ReplicationFactorMin int `json:"replication_factor_min"`
		ReplicationFactorMax int `json:"replication_factor_max"`
		Metadata             map[string]string
		ExpireAt             time.Time `json:"expire_at"`
		Allocations          []string
	}
	if err := json.Unmarshal(c.Ctl(t, 2, "--enc=json", "pin", "ls", root), &pin); err != nil {
		t.Fatal(err)
	}
	slices.Sort(pin.Allocations)
	slices.Sort(allocated)
	if pin.Name != "front" || pin.ReplicationFactorMin != 2 || pin.ReplicationFactorMax != 2 || pin.Metadata["team"] != "ops" ||
		!pin.ExpireAt.Equal(exp) || !slices.Equal(pin.Allocations, allocated) {
		t.Fatalf("the cluster's pin: %+v; want name front, factors 2/2, team=ops, expiry %v, allocations %v", pin, exp, allocated)
	}

	// The ctl through ingestd sees what it sees against the cluster.
	for _, args := range [][]string{{"pin", "ls", root}, {"pin", "ls"}, {"peers", "ls"}, {"status", root}, {"status"}, {"health", "metrics"}, {"recover", root}} {
		through := clustertest.CtlRun(t, fa.url, append([]string{"--enc=json"}, args...)...)
		direct := clustertest.CtlRun(t, c.Peers[0].URL(), append([]string{"--enc=json"}, args...)...)
		if through.ExitCode != direct.ExitCode || canonical(t, through.Stdout) != canonical(t, direct.Stdout) {
			t.Fatalf("ctl %v: through ingestd exit %d %s; against the cluster exit %d %s", args, through.ExitCode, through.Stdout, direct.ExitCode, direct.Stdout)
		}
	}

	if out := clustertest.Ctl(t, fa.url, "health", "graph"); !strings.Contains(string(out), "digraph") || !strings.Contains(string(out), "peer2") {
		t.Fatalf("ctl health graph through ingestd: %s", out)
	}

	// Both ingestd instances at once.
	var wg sync.WaitGroup
	roots := make([]string, 4)
	for i := range roots {
		wg.Go(func() {
			front := fa
			if i%2 == 1 {
				front = fb
			}
			ct, b := body(part{name: "c.bin", body: randBytes(2<<20, uint64(200+i))})
			r := post(t, front, "", ct, b)
			if r.status != 200 || r.trailer != "" || len(r.outputs) == 0 {
				t.Errorf("concurrent add %d: %d %q", i, r.status, r.trailer)
				return
			}
			roots[i] = r.outputs[len(r.outputs)-1]["cid"].(string)
		})
	}
	wg.Wait()
	for _, root := range roots {
		if root == "" {
			t.FailNow()
		}
		clustertest.WaitFor(t, "a concurrent add to be pinned everywhere", func() error {
			for id, s := range clusterStatus(t, c, root) {
				if s != "pinned" {
					return fmt.Errorf("%s on %s", s, id)
				}
			}
			return nil
		})
	}

	// A kubo killed mid-add: replication-min 2 of 3 holds on the others,
	// and the dead peer is not in the pin.
	pr, pw := io.Pipe()
	w := multipart.NewWriter(pw)
	type result struct {
		raw     string
		trailer string
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", fa.url+"/add?replication-min=2&replication-max=3", pr)
		req.Header.Set("Content-Type", w.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{trailer: err.Error()}
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(raw), resp.Trailer.Get("X-Stream-Error")}
	}()
	fw, _ := w.CreateFormFile("file", "killed")
	for i := range 16 {
		if i == 4 {
			c.KillKubo(2)
		}
		fw.Write(randBytes(1<<20, uint64(300+i)))
	}
	w.Close()
	pw.Close()
	res := <-done
	if res.trailer != "" || !strings.Contains(res.raw, `"name":"killed"`) {
		t.Fatalf("add with a kubo killed midway: %q %q", res.raw, res.trailer)
	}
	var o struct {
		Cid         string
		Allocations []string
	}
	json.Unmarshal([]byte(res.raw[strings.LastIndex(strings.TrimSpace(res.raw), "\n")+1:]), &o)
	if len(o.Allocations) != 2 || slices.Contains(o.Allocations, ids[2]) {
		t.Fatalf("allocations of an add whose third kubo died: %v", o.Allocations)
	}

	// The cluster down: 503 before anything is read or sent.
	for i := range c.Peers {
		c.Kill(i)
	}
	ct, b = body(part{name: "late.bin", body: randBytes(1<<20, 9)})
	r = post(t, fa, "", ct, b)
	if r.status != 503 || !strings.Contains(string(r.raw), "cannot reach cluster") {
		t.Fatalf("add with the cluster down: %d %s", r.status, r.raw)
	}
}

// canonical is the JSON values the ctl printed, with the times (which
// differ between two calls) left out and every list sorted (IPFS Cluster
// lists peers and addresses in no fixed order).
func canonical(t *testing.T, out []byte) string {
	t.Helper()
	var vals []string
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("ctl printed %q: %v", out, err)
		}
		b, _ := json.Marshal(canon(v))
		vals = append(vals, string(b))
	}
	slices.Sort(vals)
	return strings.Join(vals, "\n")
}

func canon(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "timestamp", "created", "expire", "received_at", "triggered_at":
				delete(x, k)
			default:
				x[k] = canon(e)
			}
		}
		return x
	case []any:
		keys := make([]string, len(x))
		for i, e := range x {
			b, _ := json.Marshal(canon(e))
			keys[i] = string(b)
		}
		slices.Sort(keys)
		return keys
	}
	return v
}

// TestClusterFrontDefaultKubo: without overrides, ingestd finds each
// peer's kubo API on the host of the peer's IPFS addresses, port 5001 (each
// peer on its own loopback address, as on machines of their own).
func TestClusterFrontDefaultKubo(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.DistinctHosts())
	front := frontWith(t, c, 0, nil)
	data := randBytes(1<<20+5, 81)
	ct, b := body(part{name: "d.bin", body: data})
	r := post(t, front, "replication-min=3&replication-max=3", ct, b)
	if r.status != 200 || r.trailer != "" || len(r.outputs) == 0 {
		t.Fatalf("add: %d %q %s", r.status, r.trailer, r.raw)
	}
	root := r.outputs[len(r.outputs)-1]["cid"].(string)
	for i := range c.Peers {
		if blocks, _ := has(t, c.Peers[i].Kubo, root); !blocks {
			t.Fatalf("peer %d's kubo, found at its default address, lacks the blocks", i)
		}
	}
	clustertest.WaitFor(t, "the add to be pinned on every peer", func() error {
		for id, s := range clusterStatus(t, c, root) {
			if s != "pinned" {
				return fmt.Errorf("%s on %s", s, id)
			}
		}
		return nil
	})
}

// TestClusterAddBenchmark measures, on one 3-peer cluster in one run, the
// time from starting `ipfs-cluster-ctl add` of a file until every peer
// reports it pinned: through ingestd, and through the cluster's own /add,
// interleaved, each round on a distinct file so nothing is deduplicated;
// then two ingestd instances adding two files at once. It runs only when
// INGESTD_CLUSTER_BENCH_MIB is set (the file size in MiB); the figures are
// in BENCHMARKS.md.
func TestClusterAddBenchmark(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv("INGESTD_CLUSTER_BENCH_MIB"))
	if mib <= 0 {
		t.Skip("set INGESTD_CLUSTER_BENCH_MIB to run the cluster /add benchmark")
	}
	rounds := 2
	if r, _ := strconv.Atoi(os.Getenv("INGESTD_CLUSTER_BENCH_ROUNDS")); r > 0 {
		rounds = r
	}
	c := clustertest.Start(t, 3)
	fa, fb := realFront(t, c, 0), realFront(t, c, 1)
	dir := t.TempDir()
	seed := uint64(1000)
	file := func() string {
		seed++
		p := filepath.Join(dir, fmt.Sprintf("f%d.bin", seed))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
		buf := make([]byte, 1<<20)
		for range mib {
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			f.Write(buf)
		}
		f.Close()
		return p
	}
	pinnedEverywhere := func(root string) error {
		st := clusterStatus(t, c, root)
		if len(st) != 3 {
			return fmt.Errorf("status %v", st)
		}
		for id, s := range st {
			if s != "pinned" {
				return fmt.Errorf("%s on %s", s, id)
			}
		}
		return nil
	}
	add := func(api, path string) time.Duration {
		start := time.Now()
		out := clustertest.Ctl(t, api, "add", "-Q", path)
		root := strings.TrimSpace(string(out))
		clustertest.WaitFor(t, "the add to be pinned on every peer", func() error { return pinnedEverywhere(root) })
		return time.Since(start)
	}
	mbps := func(d time.Duration, files int) float64 {
		return float64(files*mib) * (1 << 20) / 1e6 / d.Seconds()
	}
	for round := range rounds {
		a, b := file(), file()
		ti := add(fa.url, a)
		tc := add(c.Peers[0].URL(), b)
		t.Logf("round %d, %d MiB to 3 peers: ingestd %.1f MB/s (%v), cluster /add %.1f MB/s (%v): %.2fx",
			round, mib, mbps(ti, 1), ti.Round(time.Millisecond), mbps(tc, 1), tc.Round(time.Millisecond), tc.Seconds()/ti.Seconds())
		os.Remove(a)
		os.Remove(b)
	}
	// Two ingestd instances, two files at once.
	a, b := file(), file()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { add(fa.url, a) })
	wg.Go(func() { add(fb.url, b) })
	wg.Wait()
	both := time.Since(start)
	a2, b2 := file(), file()
	start = time.Now()
	wg.Go(func() { add(c.Peers[0].URL(), a2) })
	wg.Go(func() { add(c.Peers[1].URL(), b2) })
	wg.Wait()
	bothCluster := time.Since(start)
	t.Logf("two files of %d MiB at once: two ingestd %.1f MB/s (%v), two cluster peers' /add %.1f MB/s (%v): %.2fx",
		mib, mbps(both, 2), both.Round(time.Millisecond), mbps(bothCluster, 2), bothCluster.Round(time.Millisecond), bothCluster.Seconds()/both.Seconds())
}
