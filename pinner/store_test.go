package pinner

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/localstore"
)

func openStore(t *testing.T, dir string) (*Store, *localstore.Store) {
	t.Helper()
	ls, err := localstore.Open(dir, localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Close() })
	return NewStore(ls.Datastore(), StoreOptions{}), ls
}

func testPin(t *testing.T, c string, name string) Pin {
	t.Helper()
	return Pin{
		ReplicationFactorMin: -1,
		ReplicationFactorMax: -1,
		Name:                 name,
		Mode:                 ModeRecursive,
		ExpireAt:             time.Date(2027, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600)),
		Metadata:             map[string]string{"k": name},
		Cid:                  mustCid(t, c),
		Type:                 TypePin,
		Allocations:          []string{},
		MaxDepth:             -1,
		// time.Now carries a monotonic reading and the Local zone; both
		// must not matter.
		Timestamp: time.Now(),
	}
}

// samePin asserts that got is p as put: same JSON, same instants.
func samePin(t *testing.T, got, want Pin) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Fatalf("pin differs:\n got %s\nwant %s", g, w)
	}
	if !got.Timestamp.Equal(want.Timestamp) || !got.ExpireAt.Equal(want.ExpireAt) {
		t.Fatalf("times differ: got %v/%v, want %v/%v", got.Timestamp, got.ExpireAt, want.Timestamp, want.ExpireAt)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, ls := openStore(t, dir)

	// A block in the same database must not show up as a pin.
	data := []byte("block")
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.Put(ctx, cid.NewCidV1(cid.Raw, h), data); err != nil {
		t.Fatal(err)
	}

	pins := []Pin{testPin(t, testV0, "a"), testPin(t, testV1, "b"), testPin(t, testRaw, "c")}
	for _, p := range pins {
		if err := s.Put(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pins {
		got, err := s.Get(ctx, p.Cid.Cid)
		if err != nil {
			t.Fatal(err)
		}
		samePin(t, got, p)
	}

	// List: every pin once, in CID string order (QmT… < bafk… < bafy…).
	var listed []Pin
	if err := s.List(ctx, func(p Pin) error { listed = append(listed, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 {
		t.Fatalf("List gave %d pins; want 3", len(listed))
	}
	samePin(t, listed[0], pins[0])
	samePin(t, listed[1], pins[2])
	samePin(t, listed[2], pins[1])

	// Put replaces.
	updated := pins[1]
	updated.Name = "b2"
	if err := s.Put(ctx, updated); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, updated.Cid.Cid)
	if err != nil {
		t.Fatal(err)
	}
	samePin(t, got, updated)

	// Delete, then the pin is gone everywhere.
	if err := s.Delete(ctx, pins[0].Cid.Cid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, pins[0].Cid.Cid); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
	if err := s.Delete(ctx, pins[0].Cid.Cid); err != ErrNotFound {
		t.Fatalf("second Delete: %v; want ErrNotFound", err)
	}
	n := 0
	if err := s.List(ctx, func(Pin) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("List after Delete gave %d pins; want 2", n)
	}

	// Reopen: pins persist.
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openStore(t, dir)
	got, err = s.Get(ctx, updated.Cid.Cid)
	if err != nil {
		t.Fatal(err)
	}
	samePin(t, got, updated)
}

func TestStoreGetAbsent(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, t.TempDir())
	if err := s.Put(ctx, testPin(t, testV1, "v1")); err != nil {
		t.Fatal(err)
	}
	f := func(name string, c cid.Cid) {
		t.Helper()
		_, err := s.Get(ctx, c)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: Get: %v; want ErrNotFound", name, err)
		}
		// The REST layer sends err.Error() and clients map this exact text
		// to 404 (spec §1.3).
		if err.Error() != "pin is not part of the pinset" {
			t.Fatalf("%s: Get: error text %q", name, err)
		}
		if err := s.Delete(ctx, c); err == nil || err.Error() != "pin is not part of the pinset" {
			t.Fatalf("%s: Delete: %v; want ErrNotFound", name, err)
		}
	}
	f("never pinned", mustCid(t, testV0).Cid)
	f("undefined", cid.Undef)
	// Pins are keyed by CID: the same multihash under another CID
	// (here raw instead of dag-pb) is another pin.
	v1 := mustCid(t, testV1).Cid
	f("other codec, same hash", cid.NewCidV1(cid.Raw, v1.Hash()))
}

func TestStoreListStops(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, t.TempDir())
	for _, c := range []string{testV0, testV1, testRaw} {
		if err := s.Put(ctx, testPin(t, c, c)); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(ctx, func(Pin) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Fatalf("List = %v after %d calls; want stop after 2", err, calls)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.List(canceled, func(Pin) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with canceled context: %v", err)
	}

	n := 0
	if err := s.List(ctx, func(Pin) error { n++; return nil }); err != nil || n != 3 {
		t.Fatalf("List = %v, %d pins; want nil, 3", err, n)
	}
}

func TestStorePutUndefined(t *testing.T) {
	s, _ := openStore(t, t.TempDir())
	if err := s.Put(context.Background(), Pin{}); err == nil {
		t.Fatal("Put of a pin without cid succeeded")
	}
}
