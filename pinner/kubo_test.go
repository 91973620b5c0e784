package pinner

import (
	"context"
	"io"
	"log"
	"net/url"
	"strings"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/kuborpc"
	"github.com/ingestd/ingestd/localstore"
)

// kuboPeers starts n real kubo daemons and returns them with a Targets
// function that checks each one's liveness with /api/v0/id, as
// blockfanout's checks do.
func kuboPeers(t *testing.T, n int) ([]*kubotest.Daemon, func() []Target) {
	t.Helper()
	var ds []*kubotest.Daemon
	var clients []*kuborpc.Client
	var ids []string
	for range n {
		d := kubotest.StartDaemon(t, kubotest.NewRepo(t))
		c, err := kuborpc.New(d.URL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.ID(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ds, clients, ids = append(ds, d), append(clients, c), append(ids, info.ID)
	}
	return ds, func() []Target {
		out := make([]Target, n)
		for i, c := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := c.ID(ctx)
			cancel()
			out[i] = Target{PeerState: PeerState{ID: ids[i], Name: "kubo" + string(rune('0'+i)), Alive: err == nil}, RPC: c}
			if err != nil {
				out[i].Err = err.Error()
			}
		}
		return out
	}
}

func kuboPinner(t *testing.T, dir string, targets func() []Target) (*Pinner, func()) {
	t.Helper()
	ls, err := localstore.Open(dir, localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{
		Store:        NewStore(ls.Datastore(), StoreOptions{}),
		Self:         PeerState{ID: selfID},
		Targets:      targets,
		MaxAttempts:  1,
		PinTimeout:   20 * time.Second,
		CheckTimeout: 5 * time.Second,
		Logger:       log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			p.Stop()
			_ = ls.Close()
		}
	}
	t.Cleanup(stop)
	return p, stop
}

// kuboAdd adds data to d without pinning it and returns its CID.
func kuboAdd(t *testing.T, d *kubotest.Daemon, data string) cid.Cid {
	t.Helper()
	out := d.Repo.Run(t, strings.NewReader(data), "add", "-Q", "--pin=false")
	c, err := cid.Decode(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("kubo add: %q: %v", out, err)
	}
	return c
}

// pinnedOn asks d's own pin/ls whether c is pinned there.
func pinnedOn(t *testing.T, d *kubotest.Daemon, c cid.Cid) bool {
	t.Helper()
	out, err := d.CallErr(t.Context(), "pin/ls", url.Values{"arg": {c.String()}, "type": {"all"}})
	return err == nil && strings.Contains(string(out), c.String())
}

// TestKuboPinLifecycle drives the tracker against real kubo daemons: a
// pin lands on the allocated peer only, a pin removed behind ingestd's
// back is reported unexpectedly_unpinned and recovered, an unpin removes
// it from kubo, and a dead peer is a cluster_error.
func TestKuboPinLifecycle(t *testing.T) {
	ds, targets := kuboPeers(t, 2)
	p, _ := kuboPinner(t, t.TempDir(), targets)
	ctx := t.Context()
	a, b := targets()[0].ID, targets()[1].ID

	c := kuboAdd(t, ds[0], "lifecycle content")
	pin, err := p.Pin(ctx, Pin{Cid: CID{c}, Name: "n", ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []string{a}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pin.Allocations) != 1 || pin.Allocations[0] != a {
		t.Fatalf("allocations %v; want [%s]", pin.Allocations, a)
	}
	waitStatus(t, p, c, a, StatusPinned)
	if !pinnedOn(t, ds[0], c) {
		t.Fatal("status says pinned but kubo has no pin")
	}
	if st := statusOn(t, p, c, b); st.Status != StatusRemote {
		t.Fatalf("the peer not allocated: %+v; want remote", st)
	}
	if pinnedOn(t, ds[1], c) {
		t.Fatal("the peer not allocated pinned it")
	}

	// Removed behind ingestd's back: GET /pins/{cid} asks live.
	ds[0].Call(t, "pin/rm", url.Values{"arg": {c.String()}})
	st := statusOn(t, p, c, a)
	if st.Status != StatusUnexpectedlyUnpinned || st.Error != errUnexpectedlyUnpinned {
		t.Fatalf("after pin/rm behind our back: %+v", st)
	}
	if _, err := p.Recover(ctx, c, false); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, p, c, a, StatusPinned)
	if !pinnedOn(t, ds[0], c) {
		t.Fatal("recover did not pin it on kubo again")
	}

	// Unpin: it leaves kubo.
	if _, err := p.Unpin(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unpin to reach kubo", func() (bool, string) { return !pinnedOn(t, ds[0], c), "still pinned" })
	waitStatus(t, p, c, a, StatusUnpinned)

	// A dead peer is a cluster_error for what it should hold.
	c2 := kuboAdd(t, ds[1], "on the peer that dies")
	if _, err := p.Pin(ctx, Pin{Cid: CID{c2}, ReplicationFactorMin: 1, ReplicationFactorMax: 1, UserAllocations: []string{b}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, p, c2, b, StatusPinned)
	ds[1].Kill()
	st = statusOn(t, p, c2, b)
	if st.Status != StatusClusterError || st.Error == "" {
		t.Fatalf("dead peer: %+v; want cluster_error with the error", st)
	}
}

// TestRestartConverges: a pin in the pinset that its peer lost while
// ingestd was down is pinned again by the reconciliation at start.
func TestRestartConverges(t *testing.T) {
	ds, targets := kuboPeers(t, 1)
	dir := t.TempDir()
	a := targets()[0].ID
	c := kuboAdd(t, ds[0], "restart content")

	p, stop := kuboPinner(t, dir, targets)
	if _, err := p.Pin(t.Context(), Pin{Cid: CID{c}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, p, c, a, StatusPinned)
	stop()

	ds[0].Call(t, "pin/rm", url.Values{"arg": {c.String()}})
	p, _ = kuboPinner(t, dir, targets)
	waitFor(t, "the pin to be restored on kubo", func() (bool, string) { return pinnedOn(t, ds[0], c), "not pinned" })
	waitStatus(t, p, c, a, StatusPinned)
}
