package blockfanout

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// startDaemons starts n kubo daemons, each in its own repository, at once.
// kubotest fails the test from the goroutine that hit the error; the test
// then stops here.
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
			t.FailNow()
		}
	}
	return ds
}

// peerConfigs names daemon i "kubo<i>".
func peerConfigs(ds []*kubotest.Daemon) []PeerConfig {
	pcs := make([]PeerConfig, len(ds))
	for i, d := range ds {
		pcs[i] = PeerConfig{Name: "kubo" + string(rune('0'+i)), URL: d.URL()}
	}
	return pcs
}

// startFanout creates and starts a Fanout and stops it at cleanup.
func startFanout(t testing.TB, cfg Config) *Fanout {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(f.Stop)
	return f
}

type testBlock struct {
	c    cid.Cid
	data []byte
}

// randomBlocks returns n raw blocks of size random bytes (from seed),
// hashed with the multihash function code.
func randomBlocks(t testing.TB, seed uint64, n, size int, code uint64) []testBlock {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(size)))
	out := make([]testBlock, n)
	for i := range out {
		data := make([]byte, size)
		for j := 0; j+8 <= len(data); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		out[i] = testBlock{c: rawCid(t, data, code), data: data}
	}
	return out
}

func rawCid(t testing.TB, data []byte, code uint64) cid.Cid {
	t.Helper()
	var h mh.Multihash
	var err error
	if code == mh.SHA2_256 {
		sum := sha256.Sum256(data)
		h, err = mh.Encode(sum[:], mh.SHA2_256)
	} else {
		h, err = mh.Sum(data, code, -1)
	}
	if err != nil {
		t.Fatalf("cannot hash block: %v", err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// putAll puts blocks into s and fails the test on the first error.
func putAll(t testing.TB, s *Session, blocks []testBlock) {
	t.Helper()
	for _, b := range blocks {
		if err := s.Put(context.Background(), b.c, b.data); err != nil {
			t.Fatalf("Put %s: %v", b.c, err)
		}
	}
}

// missingBlocks returns the blocks that d does not have (block/stat
// --offline fails for them).
func missingBlocks(t testing.TB, d *kubotest.Daemon, blocks []testBlock) []string {
	t.Helper()
	var missing []string
	for _, b := range blocks {
		_, err := d.CallErr(context.Background(), "block/stat", url.Values{"arg": {b.c.String()}, "offline": {"true"}})
		if err != nil {
			missing = append(missing, b.c.String())
		}
	}
	return missing
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantErr checks that err wraps target and mentions every string of want.
func wantErr(t testing.TB, err, target error, want ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %v", err, target)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
