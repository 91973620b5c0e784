package pinner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest/car"
	"github.com/ingestd/ingestd/localstore"
)

const selfID = "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw"

// embedded starts a Pinner in the embedded mode over a real store, with
// the completeness check the server uses.
func embedded(t *testing.T, mutate ...func(*Config)) (*Pinner, *localstore.Store) {
	t.Helper()
	ls, err := localstore.Open(t.TempDir(), localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Close() })
	cfg := Config{
		Store: NewStore(ls.Datastore(), StoreOptions{}),
		Self:  PeerState{ID: selfID, Name: "self"},
		LocalCheck: func(ctx context.Context, c cid.Cid, recursive bool) error {
			return car.CheckStored(ctx, c, ls.Get, recursive)
		},
		MaxAttempts: 1,
		Logger:      log.New(io.Discard, "", 0),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p, ls
}

func rawBlock(t *testing.T, data string) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte(data), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// waitFor polls cond every 10 ms until it holds or 30 s pass (a bound
// against hangs, not a performance assertion).
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last state: %s", what, last)
}

func statusOn(t *testing.T, p *Pinner, c cid.Cid, peer string) PinInfo {
	t.Helper()
	g, err := p.Status(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	return g.PeerMap[peer]
}

func waitStatus(t *testing.T, p *Pinner, c cid.Cid, peer string, want Status) PinInfo {
	t.Helper()
	var pi PinInfo
	waitFor(t, fmt.Sprintf("%s on %s to be %s", c, peer, want), func() (bool, string) {
		pi = statusOn(t, p, c, peer)
		return pi.Status == want, fmt.Sprintf("%+v", pi)
	})
	return pi
}

// TestEmbeddedPinLifecycle: in the embedded mode a pin is pinned once its
// DAG is complete in the store, pin_error (with the missing block named)
// when it is not, and recover pins it once the block arrived.
func TestEmbeddedPinLifecycle(t *testing.T) {
	p, ls := embedded(t)
	ctx := t.Context()

	present := rawBlock(t, "present")
	if err := ls.Put(ctx, present, []byte("present")); err != nil {
		t.Fatal(err)
	}
	pin, err := p.Pin(ctx, Pin{Cid: CID{present}, Name: "a", Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if pin.ReplicationFactorMin != -1 || pin.ReplicationFactorMax != -1 || len(pin.Allocations) != 0 || pin.Allocations == nil {
		t.Fatalf("pin factors/allocations: %+v", pin)
	}
	waitStatus(t, p, present, selfID, StatusPinned)

	missing := rawBlock(t, "missing")
	if _, err := p.Pin(ctx, Pin{Cid: CID{missing}}); err != nil {
		t.Fatal(err)
	}
	pi := waitStatus(t, p, missing, selfID, StatusPinError)
	if !strings.Contains(pi.Error, missing.String()) {
		t.Fatalf("pin_error does not name the missing block: %q", pi.Error)
	}

	// The block arrives; recover pins it.
	if err := ls.Put(ctx, missing, []byte("missing")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Recover(ctx, missing, false); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, p, missing, selfID, StatusPinned)

	// Unpin: gone from the pinset, status unpinned, a second unpin is
	// ErrNotFound.
	old, err := p.Unpin(ctx, present)
	if err != nil || old.Name != "a" {
		t.Fatalf("Unpin = %+v, %v", old, err)
	}
	if st := statusOn(t, p, present, selfID); st.Status != StatusUnpinned {
		t.Fatalf("status after unpin: %+v", st)
	}
	if _, err := p.Unpin(ctx, present); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second unpin: %v", err)
	}
}

// TestBadFactorsLeavePinsetUnchanged: factors no peer set can meet are
// ErrBadRequest and store nothing.
func TestBadFactorsLeavePinsetUnchanged(t *testing.T) {
	p, _ := embedded(t)
	c := rawBlock(t, "x")
	for _, f := range [][2]int{{3, 1}, {2, 2}, {-1, 2}, {-2, -2}} {
		_, err := p.Pin(t.Context(), Pin{Cid: CID{c}, ReplicationFactorMin: f[0], ReplicationFactorMax: f[1]})
		if !errors.Is(err, ErrBadRequest) {
			t.Errorf("factors %v: %v; want ErrBadRequest", f, err)
		}
	}
	if _, err := p.Get(t.Context(), c); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a rejected pin was stored: %v", err)
	}
}

// TestExpiredPinsAreUnpinned: a pin past its expire_at leaves the pinset
// by itself.
func TestExpiredPinsAreUnpinned(t *testing.T) {
	p, ls := embedded(t, func(c *Config) { c.ExpiryInterval = 20 * time.Millisecond })
	ctx := t.Context()
	keep, gone := rawBlock(t, "keep"), rawBlock(t, "gone")
	for _, c := range []cid.Cid{keep, gone} {
		if err := ls.Put(ctx, c, []byte(map[cid.Cid]string{keep: "keep", gone: "gone"}[c])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Pin(ctx, Pin{Cid: CID{keep}, ExpireAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pin(ctx, Pin{Cid: CID{gone}, ExpireAt: time.Now().Add(200 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expired pin to leave the pinset", func() (bool, string) {
		_, err := p.Get(ctx, gone)
		return errors.Is(err, ErrNotFound), fmt.Sprint(err)
	})
	if _, err := p.Get(ctx, keep); err != nil {
		t.Fatalf("the unexpired pin is gone: %v", err)
	}
}

// TestStatusAllFilter: filters keep only matching peers, and pins with
// none are left out.
func TestStatusAllFilter(t *testing.T) {
	p, ls := embedded(t)
	ctx := t.Context()
	ok, bad := rawBlock(t, "ok"), rawBlock(t, "bad")
	if err := ls.Put(ctx, ok, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []cid.Cid{ok, bad} {
		if _, err := p.Pin(ctx, Pin{Cid: CID{c}}); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, p, bad, selfID, StatusPinError)
	waitStatus(t, p, ok, selfID, StatusPinned)
	list := func(filter string) []string {
		f, valid := ParseFilter(filter)
		if !valid {
			t.Fatalf("filter %q invalid", filter)
		}
		var got []string
		if err := p.StatusAll(ctx, f, false, func(g GlobalPinInfo) error {
			got = append(got, g.Cid.String())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := list(""); len(got) != 2 {
		t.Fatalf("no filter: %v", got)
	}
	if got := list("pinned"); len(got) != 1 || got[0] != ok.String() {
		t.Fatalf("pinned: %v", got)
	}
	if got := list("error,queued"); len(got) != 1 || got[0] != bad.String() {
		t.Fatalf("error: %v", got)
	}
	if _, valid := ParseFilter("bogus"); valid {
		t.Fatal("an unknown filter was accepted")
	}
	if _, valid := ParseFilter("pinned,bogus"); !valid {
		t.Fatal("a filter with one known name was rejected")
	}
}

// TestRecoverFindsCorruption: in the embedded mode, recover reads a pinned
// DAG again, so a block corrupted on disk turns the pin into pin_error
// with the block named, as the store reports it.
func TestRecoverFindsCorruption(t *testing.T) {
	dir := t.TempDir()
	ls, err := localstore.Open(dir, localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Close() })
	p, err := New(Config{
		Store:       NewStore(ls.Datastore(), StoreOptions{}),
		Self:        PeerState{ID: selfID},
		LocalCheck:  func(ctx context.Context, c cid.Cid, rec bool) error { return car.CheckStored(ctx, c, ls.Get, rec) },
		MaxAttempts: 1,
		Logger:      log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	ctx := t.Context()
	data := []byte(strings.Repeat("x", 4096))
	c := rawBlock(t, string(data))
	if err := ls.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	if err := ls.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pin(ctx, Pin{Cid: CID{c}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, p, c, selfID, StatusPinned)
	// Recover of an intact pin answers pinned, as IPFS Cluster does.
	if g, err := p.Recover(ctx, c, false); err != nil || g.PeerMap[selfID].Status != StatusPinned {
		t.Fatalf("recover of an intact pin: %+v, %v", g.PeerMap[selfID], err)
	}

	// Flip a byte of the block in its segment file.
	segs, _ := filepath.Glob(filepath.Join(dir, "blocks", "*.log"))
	corrupted := false
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, data); i >= 0 {
			f, err := os.OpenFile(seg, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{'y'}, int64(i+100))
			f.Close()
			corrupted = true
		}
	}
	if !corrupted {
		t.Fatal("the block is in no segment file")
	}
	g, err := p.Recover(ctx, c, false)
	if err != nil {
		t.Fatal(err)
	}
	pi := g.PeerMap[selfID]
	if pi.Status != StatusPinError || !strings.Contains(pi.Error, c.String()) || !strings.Contains(pi.Error, "corrupt") {
		t.Fatalf("recover of a corrupt pin answered %+v; want pin_error saying the block is corrupt", pi)
	}
	if st := statusOn(t, p, c, selfID); st.Status != StatusPinError {
		t.Fatalf("status after recover: %+v", st)
	}
}
