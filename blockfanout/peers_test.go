package blockfanout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/internal/kubotest"
)

func statusNames(sts []PeerStatus) []string {
	var names []string
	for _, st := range sts {
		names = append(names, st.Peer.Name)
	}
	return names
}

// TestAddRemovePeer changes the peer set of a running Fanout.
func TestAddRemovePeer(t *testing.T) {
	t.Parallel()
	a := newFakeKubo(t, fakeID("A"), 1<<30, nil)
	b := newFakeKubo(t, fakeID("B"), 5<<30, goodAcks)
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "a", URL: a.URL()}}, CheckInterval: 20 * time.Millisecond})
	ctx := context.Background()

	st, err := f.AddPeer(ctx, PeerConfig{Name: "b", URL: b.URL() + "/"})
	if err != nil {
		t.Fatalf("AddPeer: %v", err)
	}
	if st.ID != fakeID("B") || !st.Alive || st.FreeSpace != 5<<30 || st.Peer.URL != b.URL() || st.Peer.RPC().URL() != b.URL() {
		t.Errorf("AddPeer = %+v; want b checked: its ID, alive, 5 GiB free, URL without the slash", st)
	}
	if names := statusNames(f.Peers()); !slices.Equal(names, []string{"a", "b"}) {
		t.Errorf("Peers = %v, want [a b]", names)
	}
	if got, err := f.Allocate(1, 1, nil); err != nil || peerNames(got)[0] != "b" {
		t.Errorf("Allocate = %v, %v; want b (most free space)", peerNames(got), err)
	}
	// Later checks include b.
	b.setFree(7 << 30)
	waitFor(t, 5*time.Second, "b's new free space", func() bool { return f.Peers()[1].FreeSpace == 7<<30 })

	for _, tc := range []struct {
		name string
		pc   PeerConfig
		want string
	}{
		{"name in use", PeerConfig{Name: "a", URL: "http://127.0.0.1:1"}, `peer name "a" is already in use`},
		{"URL in use", PeerConfig{Name: "c", URL: a.URL()}, "is already in use (by a)"},
		{"URL in use as a default name", PeerConfig{URL: a.URL()}, "is already in use (by a)"},
		{"bad URL", PeerConfig{Name: "c", URL: "ftp://h:1"}, `cannot add peer "c"`},
	} {
		if _, err := f.AddPeer(ctx, tc.pc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: AddPeer = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}

	// A session that has b keeps it after RemovePeer.
	s := f.NewSession(ctx, []*Peer{st.Peer}, 1)
	blocks := randomBlocks(t, 200, 8, 4<<10, mh.SHA2_256)
	putAll(t, s, blocks[:4])

	removed, err := f.RemovePeer(fakeID("B")) // by kubo peer ID
	if err != nil || removed.Peer != st.Peer || removed.FreeSpace != 7<<30 {
		t.Fatalf("RemovePeer = %+v, %v; want b's last status", removed, err)
	}
	if names := statusNames(f.Peers()); !slices.Equal(names, []string{"a"}) {
		t.Errorf("Peers after RemovePeer = %v, want [a]", names)
	}
	putAll(t, s, blocks[4:])
	if res, err := s.Close(ctx); err != nil || len(res.OK) != 1 {
		t.Errorf("Close of a session with a removed peer = %+v, %v; want b OK", res, err)
	}
	// b is no longer checked: a is checked twice more, b not once.
	bChecks, aChecks := b.checks(), a.checks()
	waitFor(t, 5*time.Second, "two more checks of a", func() bool { return a.checks() >= aChecks+2 })
	if n := b.checks(); n != bChecks {
		t.Errorf("b was checked %d times after RemovePeer", n-bChecks)
	}
	if got, err := f.Allocate(-1, -1, nil); err != nil || !slices.Equal(peerNames(got), []string{"a"}) {
		t.Errorf("Allocate after RemovePeer = %v, %v; want [a]", peerNames(got), err)
	}

	if _, err := f.RemovePeer("b"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("RemovePeer of a removed peer = %v, want ErrUnknownPeer", err)
	}
	if _, err := f.RemovePeer(""); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf(`RemovePeer("") = %v, want ErrUnknownPeer`, err)
	}
	// The name and URL are free again.
	if _, err := f.AddPeer(ctx, PeerConfig{Name: "b", URL: b.URL()}); err != nil {
		t.Errorf("AddPeer again: %v", err)
	}
	if _, err := f.RemovePeer("b"); err != nil { // by name
		t.Errorf("RemovePeer by name: %v", err)
	}
}

// TestAddPeerDown: a daemon that does not answer is added, marked down.
func TestAddPeerDown(t *testing.T) {
	t.Parallel()
	a := newFakeKubo(t, fakeID("A"), 1<<30, nil)
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "a", URL: a.URL()}}})
	st, err := f.AddPeer(context.Background(), PeerConfig{Name: "down", URL: "http://" + closedAddrs(t, 1)[0]})
	if err != nil || st.Alive || st.ID != "" || !strings.Contains(st.LastErr, "connection refused") || st.LastCheck.IsZero() {
		t.Errorf("AddPeer = %+v, %v; want it added, checked and down", st, err)
	}
	if names := statusNames(f.Peers()); !slices.Equal(names, []string{"a", "down"}) {
		t.Errorf("Peers = %v, want [a down]", names)
	}
}

// TestAddPeerCanceled: a peer whose check was cut short is not added, nor
// is any peer once the Fanout is stopped.
func TestAddPeerCanceled(t *testing.T) {
	t.Parallel()
	a := newFakeKubo(t, fakeID("A"), 1<<30, nil)
	b := newFakeKubo(t, fakeID("B"), 1<<30, nil)
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "a", URL: a.URL()}}})
	cause := errors.New("client went away")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if _, err := f.AddPeer(ctx, PeerConfig{Name: "b", URL: b.URL()}); !errors.Is(err, cause) {
		t.Errorf("AddPeer with a canceled context = %v, want its cause", err)
	}
	if names := statusNames(f.Peers()); !slices.Equal(names, []string{"a"}) {
		t.Errorf("Peers = %v, want [a]", names)
	}
	f.Stop()
	if _, err := f.AddPeer(context.Background(), PeerConfig{Name: "b", URL: b.URL()}); !errors.Is(err, ErrStopped) {
		t.Errorf("AddPeer after Stop = %v, want ErrStopped", err)
	}
}

// TestPeerSetRace changes the peer set while checks, allocations and
// listings run; run with -race.
func TestPeerSetRace(t *testing.T) {
	t.Parallel()
	var pcs []PeerConfig
	for i := range 4 {
		k := newFakeKubo(t, fakeID(fmt.Sprint(i)), uint64(i+1)<<30, nil)
		pcs = append(pcs, PeerConfig{Name: fmt.Sprint("p", i), URL: k.URL()})
	}
	f := startFanout(t, Config{Peers: pcs[:1], CheckInterval: time.Millisecond})
	ctx := context.Background()
	var writers, readers sync.WaitGroup
	for _, pc := range pcs[1:] {
		writers.Go(func() {
			for range 50 {
				if _, err := f.AddPeer(ctx, pc); err != nil {
					t.Errorf("AddPeer(%s): %v", pc.Name, err)
					return
				}
				f.Allocate(1, 2, []string{pc.Name})
				if _, err := f.RemovePeer(pc.Name); err != nil {
					t.Errorf("RemovePeer(%s): %v", pc.Name, err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	reader := func(read func()) {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
					read()
				}
			}
		})
	}
	reader(func() {
		for _, st := range f.Peers() {
			_ = st.Peer.ID()
		}
	})
	// As checkAll does: read a snapshot after unlocking, while the set
	// changes.
	reader(func() {
		for _, p := range f.peerList() {
			_ = p.Name
		}
	})
	writers.Wait()
	close(done)
	readers.Wait()
	if names := statusNames(f.Peers()); !slices.Equal(names, []string{"p0"}) {
		t.Errorf("Peers = %v, want [p0]", names)
	}
}

// testAddPeer adds a real daemon to a running Fanout and sends it blocks.
func testAddPeer(t *testing.T, ds []*kubotest.Daemon) {
	f := startFanout(t, Config{Peers: peerConfigs(ds[:1])})
	st, err := f.AddPeer(context.Background(), PeerConfig{Name: "added", URL: ds[1].URL()})
	if err != nil || st.ID != ds[1].PeerID || !st.Alive || st.FreeSpace == 0 || len(st.Addresses) == 0 {
		t.Fatalf("AddPeer = %+v, %v; want it alive with ID %s, free space and addresses", st, err, ds[1].PeerID)
	}
	peers, err := f.Allocate(2, 2, []string{ds[1].PeerID})
	if err != nil || len(peers) != 2 || peers[0] != st.Peer {
		t.Fatalf("Allocate = %v, %v; want the added peer first, by its ID", peerNames(peers), err)
	}
	blocks := randomBlocks(t, 201, 10, 64<<10, mh.SHA2_256)
	s := f.NewSession(context.Background(), peers, 2)
	putAll(t, s, blocks)
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if m := missingBlocks(t, ds[1], blocks); len(m) > 0 {
		t.Errorf("the added peer lacks %d of %d blocks", len(m), len(blocks))
	}
}
