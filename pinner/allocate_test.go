package pinner

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func stateNames(ps []PeerState) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}

// TestAllocate carries over blockfanout's Fanout.Allocate cases: the same
// policy, now over a list of peer states instead of live daemons.
func TestAllocate(t *testing.T) {
	t.Parallel()
	peers := []PeerState{
		{ID: "12D3KooWFakeA", Name: "a", Alive: true, FreeSpace: 100},
		{ID: "12D3KooWFakeB", Name: "b", Alive: true, FreeSpace: 300},
		{ID: "12D3KooWFakeC", Name: "c", Alive: true, FreeSpace: 200},
		{ID: "12D3KooWFakeD", Name: "d", Alive: true, FreeSpace: 300},
		{Name: "e", Err: "connection refused"},
	}
	orig := slices.Clone(peers)

	f := func(peers []PeerState, rmin, rmax int, user []string, want []string, wantErr error, wantMsg ...string) {
		t.Helper()
		got, err := Allocate(peers, rmin, rmax, user)
		if !errors.Is(err, wantErr) || (wantErr != nil) != (err != nil) {
			t.Errorf("Allocate(%d, %d, %q) error = %v, want %v", rmin, rmax, user, err, wantErr)
			return
		}
		for _, m := range wantMsg {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("Allocate(%d, %d, %q) error %q does not mention %q", rmin, rmax, user, err, m)
			}
		}
		if names := stateNames(got); !slices.Equal(names, want) {
			t.Errorf("Allocate(%d, %d, %q) = %v, want %v", rmin, rmax, user, names, want)
		}
	}
	// Most free space first; b and d tie, the given order decides.
	f(peers, 1, 1, nil, []string{"b"}, nil)
	f(peers, 2, 3, nil, []string{"b", "d", "c"}, nil)
	f(peers, -1, -1, nil, []string{"b", "d", "c", "a"}, nil)
	// User allocations first, by name or kubo peer ID, if live; repeats
	// and unknown names are skipped.
	f(peers, 1, 2, []string{"a"}, []string{"a", "b"}, nil)
	f(peers, 1, 2, []string{"12D3KooWFakeC"}, []string{"c", "b"}, nil)
	f(peers, 1, 3, []string{"e", "a", "a", "unknown"}, []string{"a", "b", "d"}, nil)
	f(peers, 2, 2, []string{"c", "a", "b"}, []string{"c", "a"}, nil)
	// Fewer live peers than max is fine, fewer than min is not.
	f(peers, 4, 10, nil, []string{"b", "d", "c", "a"}, nil)
	f(peers, 5, 5, nil, nil, ErrNotEnoughPeers, "need at least 5, 4 of 5 live", "e (id unknown): connection refused")
	// Everywhere needs one live peer; a peer never checked says so.
	f(nil, -1, -1, nil, nil, ErrNotEnoughPeers, "need at least 1, 0 of 0 live")
	f([]PeerState{{Name: "new"}}, -1, -1, nil, nil, ErrNotEnoughPeers, "new (id unknown): not checked yet")
	// An empty user allocation does not pick a peer whose ID is unknown.
	noID := []PeerState{{Name: "x", Alive: true, FreeSpace: 1}, {Name: "y", Alive: true, FreeSpace: 2}}
	f(noID, 1, 2, []string{""}, []string{"y", "x"}, nil)

	// Ties keep the given order however many there are (an unstable sort
	// keeps small slices in order by luck).
	var many []PeerState
	var manyNames []string
	for i := range 40 {
		name := string(rune('A' + i))
		many = append(many, PeerState{Name: name, Alive: true, FreeSpace: uint64(i % 2)})
		if i%2 == 1 {
			manyNames = append(manyNames, name)
		}
	}
	for i := range 40 {
		if i%2 == 0 {
			manyNames = append(manyNames, many[i].Name)
		}
	}
	f(many, -1, -1, nil, manyNames, nil)

	if !slices.Equal(peers, orig) {
		t.Errorf("Allocate changed its input: %v, was %v", peers, orig)
	}
	got, err := Allocate(peers, 1, 1, []string{"c"})
	if err != nil || len(got) != 1 || got[0] != peers[2] {
		t.Errorf("Allocate = %+v, %v; want c's whole state", got, err)
	}

	for _, bad := range [][2]int{{0, 1}, {-1, 2}, {2, -1}, {3, 2}, {1, 0}, {-2, -2}} {
		_, err := Allocate(peers, bad[0], bad[1], nil)
		if !errors.Is(err, ErrBadFactors) || errors.Is(err, ErrNotEnoughPeers) {
			t.Errorf("Allocate(%d, %d) error = %v, want ErrBadFactors", bad[0], bad[1], err)
		}
	}
}
