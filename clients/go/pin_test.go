package clients

import (
	crand "crypto/rand"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// notPinnedMsg is the state's "not found" error, the one message that makes
// a 404 (spec §1.3, §2 GET /allocations/{hash}).
const notPinnedMsg = "pin is not part of the pinset"

// upload sends content as one file with no-pin=true, so that its blocks are
// in ingestd's store but nothing is pinned, checks the root against kubo and
// returns it.
func upload(t *testing.T, c client.Client, k *kubo, name string, content []byte) api.Cid {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, tree{name: string(content)})
	want := root(k.add(t, dir, nil, name))
	params := api.DefaultAddParams()
	params.NoPin = true
	outs := add(t, c, params, filepath.Join(dir, name))
	if got := outs[len(outs)-1].Cid.String(); got != want {
		t.Fatalf("upload of %s: root %s, kubo's is %s", name, got, want)
	}
	return mustCid(t, want)
}

// addPinned adds content through /add with default options (so it is
// pinned) and returns kubo's root for it.
func addPinned(t *testing.T, c client.Client, k *kubo, name string, content []byte, opts func(*api.AddParams)) api.Cid {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, tree{name: string(content)})
	want := root(k.add(t, dir, nil, name))
	params := api.DefaultAddParams()
	if opts != nil {
		opts(&params)
	}
	outs := add(t, c, params, filepath.Join(dir, name))
	if got := outs[len(outs)-1].Cid.String(); got != want {
		t.Fatalf("add of %s: root %s, kubo's is %s", name, got, want)
	}
	return mustCid(t, want)
}

// kuboCid returns the CID kubo gives content, without sending it anywhere.
func kuboCid(t *testing.T, k *kubo, name string, content []byte) api.Cid {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, tree{name: string(content)})
	return mustCid(t, root(k.add(t, dir, nil, name)))
}

// missingCid is the CID of random bytes nobody ever sent to ingestd.
func missingCid(t *testing.T) api.Cid {
	t.Helper()
	b := make([]byte, 64)
	crand.Read(b)
	h, err := mh.Sum(b, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewCid(cid.NewCidV1(cid.Raw, h))
}

func cidSet[T any](items []T, get func(T) api.Cid) []string {
	var s []string
	for _, it := range items {
		s = append(s, get(it).String())
	}
	sort.Strings(s)
	return s
}

func sortedCids(cids ...api.Cid) []string {
	return cidSet(cids, func(c api.Cid) api.Cid { return c })
}

func sameStrings(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

func TestPin(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	ci := upload(t, c, k, "photos.tar", randBytes("photos", 100<<10))

	// The stored pinset keeps expire_at with second precision (spec §5):
	// use a whole second so that both forms compare equal.
	expire := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	opts := api.PinOptions{
		Name:                 "holiday photos ü",
		ReplicationFactorMin: 1,
		ReplicationFactorMax: 1,
		Metadata:             map[string]string{"owner": "alice & bob", "year": "2026"},
		ExpireAt:             expire,
	}
	check := func(what string, p api.Pin) {
		t.Helper()
		if !p.Cid.Equals(ci) || p.Type != api.DataType {
			t.Errorf("%s: cid %s type %s, want %s pin", what, p.Cid, p.Type, ci)
		}
		if p.Name != opts.Name {
			t.Errorf("%s: name %q, want %q", what, p.Name, opts.Name)
		}
		if !equalMaps(p.Metadata, opts.Metadata) {
			t.Errorf("%s: metadata %v, want %v", what, p.Metadata, opts.Metadata)
		}
		if !p.ExpireAt.Equal(expire) {
			t.Errorf("%s: expire_at %v, want %v", what, p.ExpireAt, expire)
		}
		if p.ReplicationFactorMin != 1 || p.ReplicationFactorMax != 1 {
			t.Errorf("%s: replication %d/%d, want 1/1", what, p.ReplicationFactorMin, p.ReplicationFactorMax)
		}
		// One copy in a one-peer cluster: the copy is on this peer.
		if len(p.Allocations) != 1 || p.Allocations[0] != self {
			t.Errorf("%s: allocations %v, want [%s]", what, p.Allocations, self)
		}
		if p.Mode != api.PinModeRecursive || p.MaxDepth != -1 {
			t.Errorf("%s: mode %s max_depth %d, want recursive -1", what, p.Mode, p.MaxDepth)
		}
	}

	pin, err := c.Pin(t.Context(), ci, opts)
	if err != nil {
		t.Fatalf("Pin: %v", err)
	}
	check("Pin", pin)
	if pin.Timestamp.IsZero() {
		t.Error("Pin: timestamp is zero, want the commit time")
	}
	got, err := c.Allocation(t.Context(), ci)
	if err != nil {
		t.Fatalf("Allocation: %v", err)
	}
	check("Allocation", got)

	gpi, err := waitFor(t, c, ci, api.TrackerStatusPinned)
	if err != nil {
		t.Fatalf("WaitFor pinned: %v (last status %+v)", err, gpi)
	}
	if gpi.Name != opts.Name || !equalMaps(gpi.Metadata, opts.Metadata) {
		t.Errorf("status carries name %q metadata %v, want the pin's %q %v", gpi.Name, gpi.Metadata, opts.Name, opts.Metadata)
	}
	if pi := statusOf(t, gpi, self); pi.PeerName != s.PeerName {
		t.Errorf("status peername %q, want %q", pi.PeerName, s.PeerName)
	}

	// Pinning again updates the pin (spec §2 POST /pins/{hash}).
	opts2 := api.PinOptions{Name: "renamed", ReplicationFactorMin: -1, ReplicationFactorMax: -1}
	if _, err := c.Pin(t.Context(), ci, opts2); err != nil {
		t.Fatalf("Pin again: %v", err)
	}
	got, err = c.Allocation(t.Context(), ci)
	if err != nil {
		t.Fatalf("Allocation after the second Pin: %v", err)
	}
	if got.Name != "renamed" || got.ReplicationFactorMin != -1 || len(got.Allocations) != 0 {
		t.Errorf("after repinning: name %q replication %d allocations %v, want \"renamed\", -1, [] (everywhere)",
			got.Name, got.ReplicationFactorMin, got.Allocations)
	}
}

// TestPinDefaults: with the options left at zero, as the client sends them,
// the returned pin has its replication factors resolved (spec §2: "already
// resolved to the config defaults", never 0) and consistent allocations.
func TestPinDefaults(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	ci := upload(t, c, k, "plain.txt", []byte("plain\n"))

	pin, err := c.Pin(t.Context(), ci, api.PinOptions{})
	if err != nil {
		t.Fatalf("Pin: %v", err)
	}
	if pin.ReplicationFactorMin == 0 || pin.ReplicationFactorMax == 0 {
		t.Errorf("replication %d/%d: 0 must be resolved to the defaults", pin.ReplicationFactorMin, pin.ReplicationFactorMax)
	}
	switch {
	case pin.IsPinEverywhere():
		if len(pin.Allocations) != 0 {
			t.Errorf("pin everywhere with allocations %v, want []", pin.Allocations)
		}
	default:
		if len(pin.Allocations) != 1 || pin.Allocations[0] != self {
			t.Errorf("allocations %v, want [%s]", pin.Allocations, self)
		}
	}
	if pin.Name != "" || len(pin.Metadata) != 0 || !pin.ExpireAt.IsZero() {
		t.Errorf("name %q metadata %v expire_at %v, want none", pin.Name, pin.Metadata, pin.ExpireAt)
	}
	if _, err := waitFor(t, c, ci, api.TrackerStatusPinned); err != nil {
		t.Fatalf("WaitFor pinned: %v", err)
	}
}

// TestPinRejected: options that cannot be honoured are errors, and nothing
// is recorded. IPFS Cluster answers 500 (spec §2); ingestd answers 400, a
// bad request (docs/rest-api.md, "Allocation").
func TestPinRejected(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	for _, tc := range []struct {
		name     string
		min, max int
	}{
		{"two copies in a one-peer cluster", 2, 2},
		{"min larger than max", 3, 2},
		{"below -1", -2, -2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci := missingCid(t)
			_, err := c.Pin(t.Context(), ci, api.PinOptions{ReplicationFactorMin: tc.min, ReplicationFactorMax: tc.max})
			wantAPIError(t, "Pin", err, 400)
			_, err = c.Allocation(t.Context(), ci)
			wantAPIError(t, "Allocation after a rejected Pin", err, 404)
		})
	}
}

// TestPinMissingContent: in the embedded mode "pinned" means the blocks are
// in the store, so a CID whose blocks never arrived is recorded in the
// pinset but must end in pin_error with a reason, never pinned.
func TestPinMissingContent(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	ci := missingCid(t)

	pin, err := c.Pin(t.Context(), ci, api.PinOptions{Name: "ghost"})
	if err != nil {
		t.Fatalf("Pin: %v (the pin is committed before IPFS pins it, spec §2)", err)
	}
	if !pin.Cid.Equals(ci) {
		t.Errorf("Pin returned cid %s, want %s", pin.Cid, ci)
	}
	if _, err := c.Allocation(t.Context(), ci); err != nil {
		t.Errorf("Allocation: %v (the pin is in the pinset)", err)
	}
	pi := waitSettled(t, c, ci, self)
	if pi.Status != api.TrackerStatusPinError {
		t.Fatalf("status %s, want pin_error", pi.Status)
	}
	if pi.Error == "" {
		t.Error("pin_error without a reason in the error field")
	}
	if _, err := waitFor(t, c, ci, api.TrackerStatusPinned); err == nil {
		t.Error("WaitFor pinned succeeded for content ingestd never received")
	}
}

// TestPinPath: the path routes (what ipfs-cluster-ctl uses, spec §9.4). In
// the embedded mode a sub-path is resolved against the embedded store, the
// stand-in for kubo's `resolve` (spec §2 POST /pins/{ipfs|ipns|ipld}/...).
func TestPinPath(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)

	dir := t.TempDir()
	writeTree(t, dir, tree{"site/index.html": "<h1>hi</h1>\n", "site/img/logo.svg": "<svg/>\n"})
	entries := k.add(t, dir, []string{"-r"}, "site")
	byName := map[string]api.Cid{}
	for _, e := range entries {
		byName[e.Name] = mustCid(t, e.Cid)
	}
	params := api.DefaultAddParams()
	params.Recursive = true
	params.NoPin = true
	outs := add(t, c, params, filepath.Join(dir, "site"))
	checkAgainstKubo(t, k, outs, entries)
	siteCid, logoCid, indexCid := byName["site"], byName["site/img/logo.svg"], byName["site/index.html"]

	logoPath := "/ipfs/" + siteCid.String() + "/img/logo.svg"
	pin, err := c.PinPath(t.Context(), logoPath, api.PinOptions{Name: "logo"})
	if err != nil {
		t.Fatalf("PinPath(%s): %v", logoPath, err)
	}
	if !pin.Cid.Equals(logoCid) || pin.Name != "logo" {
		t.Errorf("PinPath(%s) pinned %s named %q, want %s (kubo) named \"logo\"", logoPath, pin.Cid, pin.Name, logoCid)
	}
	if _, err := waitFor(t, c, logoCid, api.TrackerStatusPinned); err != nil {
		t.Errorf("WaitFor logo pinned: %v", err)
	}

	// A bare CID gets the /ipfs/ prefix from the client; the path route
	// honours mode=direct (spec §1.6).
	pin, err = c.PinPath(t.Context(), indexCid.String(), api.PinOptions{Mode: api.PinModeDirect})
	if err != nil {
		t.Fatalf("PinPath(bare CID, direct): %v", err)
	}
	if !pin.Cid.Equals(indexCid) || pin.Mode != api.PinModeDirect || pin.MaxDepth != 0 {
		t.Errorf("PinPath(direct) = %s mode %s max_depth %d, want %s direct 0", pin.Cid, pin.Mode, pin.MaxDepth, indexCid)
	}

	unpinned, err := c.UnpinPath(t.Context(), logoPath)
	if err != nil {
		t.Fatalf("UnpinPath(%s): %v", logoPath, err)
	}
	if !unpinned.Cid.Equals(logoCid) || unpinned.Name != "logo" {
		t.Errorf("UnpinPath returned %s named %q, want the pin as it was: %s \"logo\"", unpinned.Cid, unpinned.Name, logoCid)
	}
	_, err = c.Allocation(t.Context(), logoCid)
	wantAPIError(t, "Allocation after UnpinPath", err, 404)

	if _, err := c.UnpinPath(t.Context(), indexCid.String()); err != nil {
		t.Fatalf("UnpinPath(bare CID): %v", err)
	}
	_, err = c.Allocation(t.Context(), indexCid)
	wantAPIError(t, "Allocation after UnpinPath(bare CID)", err, 404)

	_, err = c.UnpinPath(t.Context(), indexCid.String())
	wantAPIError(t, "UnpinPath of what is no longer pinned", err, 404)
}

func TestUnpin(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	ci := addPinned(t, c, k, "old.log", randBytes("old", 3000), func(p *api.AddParams) { p.Name = "old logs" })

	pin, err := c.Unpin(t.Context(), ci)
	if err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	if !pin.Cid.Equals(ci) || pin.Name != "old logs" {
		t.Errorf("Unpin returned %s named %q, want the pin as it was: %s \"old logs\"", pin.Cid, pin.Name, ci)
	}
	_, err = c.Allocation(t.Context(), ci)
	if ae := wantAPIError(t, "Allocation after Unpin", err, 404); ae.Message != notPinnedMsg {
		t.Errorf("Allocation after Unpin: message %q, want %q", ae.Message, notPinnedMsg)
	}
	_, err = c.Unpin(t.Context(), ci)
	wantAPIError(t, "second Unpin", err, 404)

	gpi, err := waitFor(t, c, ci, api.TrackerStatusUnpinned)
	if err != nil {
		t.Fatalf("WaitFor unpinned: %v", err)
	}
	if st := statusOf(t, gpi, self); st.Status != api.TrackerStatusUnpinned {
		t.Errorf("status %s, want unpinned", st.Status)
	}
}

func TestAllocations(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)

	allocs := func(filter api.PinType) []string {
		t.Helper()
		pins, err := collect(func(out chan<- api.Pin) error { return c.Allocations(t.Context(), filter, out) })
		if err != nil {
			t.Fatalf("Allocations(%s): %v", filter, err)
		}
		return cidSet(pins, func(p api.Pin) api.Cid { return p.Cid })
	}
	if got := allocs(api.AllType); len(got) != 0 {
		t.Fatalf("fresh ingestd lists pins %v", got)
	}

	a := addPinned(t, c, k, "a.bin", randBytes("alloc-a", 2000), nil)
	b := upload(t, c, k, "b.bin", randBytes("alloc-b", 2000))
	if _, err := c.Pin(t.Context(), b, api.PinOptions{Name: "b"}); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	both := sortedCids(a, b)
	for _, tc := range []struct {
		filter api.PinType
		want   []string
	}{
		{api.AllType, both},
		{api.DataType, both},
		{api.DataType | api.MetaType, both},
		{api.MetaType, nil},
		{api.ClusterDAGType | api.ShardType, nil},
	} {
		if got := allocs(tc.filter); !sameStrings(got, tc.want) {
			t.Errorf("Allocations(%v) = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestStatus(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	a := addPinned(t, c, k, "a.bin", randBytes("status-a", 1000), nil)
	unknown := missingCid(t)

	for _, local := range []bool{false, true} {
		gpi, err := c.Status(t.Context(), a, local)
		if err != nil {
			t.Fatalf("Status(local=%t): %v", local, err)
		}
		if !gpi.Cid.Equals(a) {
			t.Errorf("Status(local=%t) is about %s, want %s", local, gpi.Cid, a)
		}
		if len(gpi.PeerMap) != 1 {
			t.Errorf("Status(local=%t) peer_map %v, want only this peer", local, gpi.PeerMap)
		}
		if pi := statusOf(t, gpi, self); pi.Status != api.TrackerStatusPinned || pi.PeerName != s.PeerName {
			t.Errorf("Status(local=%t): %s peername %q, want pinned %q", local, pi.Status, pi.PeerName, s.PeerName)
		}

		// A CID that is not in the pinset is not a 404: every peer reports
		// it unpinned (spec §2 GET /pins/{hash}).
		gpi, err = c.Status(t.Context(), unknown, local)
		if err != nil {
			t.Fatalf("Status(unknown, local=%t): %v", local, err)
		}
		if pi := statusOf(t, gpi, self); pi.Status != api.TrackerStatusUnpinned {
			t.Errorf("Status(unknown, local=%t) = %s, want unpinned", local, pi.Status)
		}
	}
}

func TestStatusCids(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	a := addPinned(t, c, k, "a.bin", randBytes("cids-a", 1000), nil)
	b := addPinned(t, c, k, "b.bin", randBytes("cids-b", 1000), nil)
	unknown := missingCid(t)

	for _, local := range []bool{false, true} {
		gpis, err := collect(func(out chan<- api.GlobalPinInfo) error {
			return c.StatusCids(t.Context(), []api.Cid{a, b, unknown}, local, out)
		})
		if err != nil {
			t.Fatalf("StatusCids(local=%t): %v", local, err)
		}
		got := map[string]api.TrackerStatus{}
		for _, g := range gpis {
			if len(g.PeerMap) != 1 {
				t.Errorf("StatusCids(local=%t): %s has peer_map %v, want only this peer", local, g.Cid, g.PeerMap)
			}
			got[g.Cid.String()] = statusOf(t, g, self).Status
		}
		want := map[string]api.TrackerStatus{
			a.String(): api.TrackerStatusPinned, b.String(): api.TrackerStatusPinned,
			unknown.String(): api.TrackerStatusUnpinned,
		}
		if len(got) != len(want) || len(gpis) != len(want) {
			t.Errorf("StatusCids(local=%t) = %v, want %v", local, got, want)
			continue
		}
		for ci, st := range want {
			if got[ci] != st {
				t.Errorf("StatusCids(local=%t): %s is %s, want %s", local, ci, got[ci], st)
			}
		}
	}
}

func TestStatusAll(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	statusAll := func(filter api.TrackerStatus, local bool) []api.GlobalPinInfo {
		t.Helper()
		gpis, err := collect(func(out chan<- api.GlobalPinInfo) error { return c.StatusAll(t.Context(), filter, local, out) })
		if err != nil {
			t.Fatalf("StatusAll(%q, local=%t): %v", filter.String(), local, err)
		}
		return gpis
	}
	if got := statusAll(api.TrackerStatusUndefined, false); len(got) != 0 {
		t.Fatalf("fresh ingestd reports %d items", len(got))
	}

	good := addPinned(t, c, k, "good.bin", randBytes("statusall", 1000), nil)
	ghost := missingCid(t)
	if _, err := c.Pin(t.Context(), ghost, api.PinOptions{}); err != nil {
		t.Fatalf("Pin(ghost): %v", err)
	}
	if pi := waitSettled(t, c, ghost, self); pi.Status != api.TrackerStatusPinError {
		t.Fatalf("ghost settled as %s, want pin_error", pi.Status)
	}

	cidsOf := func(gpis []api.GlobalPinInfo) []string {
		return cidSet(gpis, func(g api.GlobalPinInfo) api.Cid { return g.Cid })
	}
	for _, tc := range []struct {
		name   string
		filter api.TrackerStatus
		local  bool
		want   []string
	}{
		{"all", api.TrackerStatusUndefined, false, sortedCids(good, ghost)},
		{"all, local", api.TrackerStatusUndefined, true, sortedCids(good, ghost)},
		{"pinned", api.TrackerStatusPinned, false, sortedCids(good)},
		{"error (composite)", api.TrackerStatusError, false, sortedCids(ghost)},
		{"pin_error, local", api.TrackerStatusPinError, true, sortedCids(ghost)},
		{"pinned or pin_error", api.TrackerStatusPinned | api.TrackerStatusPinError, false, sortedCids(good, ghost)},
		{"queued (nothing)", api.TrackerStatusQueued, false, nil},
		{"unpinning (nothing)", api.TrackerStatusUnpinning, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gpis := statusAll(tc.filter, tc.local)
			if got := cidsOf(gpis); !sameStrings(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for _, g := range gpis {
				if len(g.PeerMap) != 1 {
					t.Errorf("%s: peer_map %v, want only this peer", g.Cid, g.PeerMap)
				}
				st := statusOf(t, g, self).Status
				if tc.filter != api.TrackerStatusUndefined && !st.Match(tc.filter) {
					t.Errorf("%s has status %s, which the filter %q excludes", g.Cid, st, tc.filter.String())
				}
				want := api.TrackerStatusPinned
				if g.Cid.Equals(ghost) {
					want = api.TrackerStatusPinError
				}
				if st != want {
					t.Errorf("%s: status %s, want %s", g.Cid, st, want)
				}
			}
		})
	}
}

// TestRecover: a pin that failed because the content was missing is pinned
// by Recover once the content is there (spec §2: pin_error → pin again).
func TestRecover(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	content := randBytes("late", 50<<10)
	late := kuboCid(t, k, "late.bin", content)
	if _, err := c.Pin(t.Context(), late, api.PinOptions{Name: "late"}); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	if pi := waitSettled(t, c, late, self); pi.Status != api.TrackerStatusPinError {
		t.Fatalf("pin of content not yet sent settled as %s, want pin_error", pi.Status)
	}

	// Still missing: recovering does not make it pinned.
	gpi, err := c.Recover(t.Context(), late, false)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if !gpi.Cid.Equals(late) {
		t.Errorf("Recover answered about %s, want %s", gpi.Cid, late)
	}
	if st := statusOf(t, gpi, self).Status; st == api.TrackerStatusPinned {
		t.Errorf("Recover reports pinned while the content is still missing")
	}
	if pi := waitSettled(t, c, late, self); pi.Status != api.TrackerStatusPinError {
		t.Fatalf("after a recover with the content still missing: %s, want pin_error", pi.Status)
	}

	// The content arrives (without a pin of its own); recover pins it.
	if got := upload(t, c, k, "late.bin", content); !got.Equals(late) {
		t.Fatalf("uploaded %s, want %s", got, late)
	}
	if _, err := c.Recover(t.Context(), late, false); err != nil {
		t.Fatalf("Recover after the upload: %v", err)
	}
	if _, err := waitFor(t, c, late, api.TrackerStatusPinned); err != nil {
		t.Fatalf("WaitFor pinned after recover: %v", err)
	}

	// Nothing to do for a pinned item: the current status comes back.
	for _, local := range []bool{false, true} {
		gpi, err := c.Recover(t.Context(), late, local)
		if err != nil {
			t.Fatalf("Recover(pinned, local=%t): %v", local, err)
		}
		if len(gpi.PeerMap) != 1 || statusOf(t, gpi, self).Status != api.TrackerStatusPinned {
			t.Errorf("Recover(pinned, local=%t) = %v, want this peer pinned", local, gpi.PeerMap)
		}
	}

	// Unknown CIDs: 404 locally, "unpinned" globally (spec §2, §8).
	unknown := missingCid(t)
	_, err = c.Recover(t.Context(), unknown, true)
	wantAPIError(t, "Recover(unknown, local=true)", err, 404)
	gpi, err = c.Recover(t.Context(), unknown, false)
	if err != nil {
		t.Fatalf("Recover(unknown, local=false): %v", err)
	}
	if st := statusOf(t, gpi, self).Status; st != api.TrackerStatusUnpinned {
		t.Errorf("Recover(unknown, local=false) = %s, want unpinned", st)
	}
}

// TestRecoverAll: the stream holds only what was re-queued (spec §2 POST
// /pins/recover), and nothing (204) when nothing needed recovering.
func TestRecoverAll(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	recoverAll := func(local bool) []api.GlobalPinInfo {
		t.Helper()
		gpis, err := collect(func(out chan<- api.GlobalPinInfo) error { return c.RecoverAll(t.Context(), local, out) })
		if err != nil {
			t.Fatalf("RecoverAll(local=%t): %v", local, err)
		}
		return gpis
	}
	if got := recoverAll(false); len(got) != 0 {
		t.Fatalf("RecoverAll on a fresh ingestd returned %d items", len(got))
	}

	good := addPinned(t, c, k, "good.bin", randBytes("recoverall-good", 1000), nil)
	content := randBytes("recoverall-late", 1000)
	late := kuboCid(t, k, "late.bin", content)
	if _, err := c.Pin(t.Context(), late, api.PinOptions{}); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	for _, local := range []bool{false, true} {
		if pi := waitSettled(t, c, late, self); pi.Status != api.TrackerStatusPinError {
			t.Fatalf("late settled as %s, want pin_error", pi.Status)
		}
		got := recoverAll(local)
		if ids := cidSet(got, func(g api.GlobalPinInfo) api.Cid { return g.Cid }); !sameStrings(ids, sortedCids(late)) {
			t.Errorf("RecoverAll(local=%t) returned %v, want only the failed pin %s (not %s)", local, ids, late, good)
		}
	}

	upload(t, c, k, "late.bin", content)
	waitSettled(t, c, late, self)
	recoverAll(false)
	if _, err := waitFor(t, c, late, api.TrackerStatusPinned); err != nil {
		t.Fatalf("WaitFor pinned after RecoverAll: %v", err)
	}
	if got := recoverAll(false); len(got) != 0 {
		t.Errorf("RecoverAll with everything pinned returned %d items, want none", len(got))
	}
}

// TestWaitFor: the client-side helper behind `ipfs-cluster-ctl --wait`
// (spec §5.6) sees pins complete, fail and go away.
func TestWaitFor(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	ci := upload(t, c, k, "w.bin", randBytes("waitfor", 4000))
	if _, err := c.Pin(t.Context(), ci, api.PinOptions{}); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	gpi, err := waitFor(t, c, ci, api.TrackerStatusPinned)
	if err != nil {
		t.Fatalf("WaitFor pinned: %v", err)
	}
	if statusOf(t, gpi, self).Status != api.TrackerStatusPinned {
		t.Errorf("WaitFor returned %v, want this peer pinned", gpi.PeerMap)
	}

	if _, err := c.Unpin(t.Context(), ci); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	if _, err := waitFor(t, c, ci, api.TrackerStatusUnpinned); err != nil {
		t.Fatalf("WaitFor unpinned: %v", err)
	}

	ghost := missingCid(t)
	if _, err := c.Pin(t.Context(), ghost, api.PinOptions{}); err != nil {
		t.Fatalf("Pin(ghost): %v", err)
	}
	if _, err := waitFor(t, c, ghost, api.TrackerStatusPinned); err == nil {
		t.Error("WaitFor pinned succeeded for a CID whose content ingestd never received")
	} else if strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("WaitFor pinned for a missing CID hung instead of reporting the pin error: %v", err)
	}
}
