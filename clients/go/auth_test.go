package clients

import (
	"path/filepath"
	"testing"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
)

// withAuth is a client config for the ingestd started by TestBasicAuth. The
// Go client sends Basic auth over plain HTTP when SSL is false (unlike
// ipfs-cluster-ctl, whose --basic-auth turns HTTPS on, spec §6.1).
func withAuth(s *ingestd, user, pass string) *client.Config {
	cfg := s.clientConfig()
	cfg.Username, cfg.Password = user, pass
	return cfg
}

func TestBasicAuth(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t, "--basic-auth", "alice:secret")
	good := newClient(t, withAuth(s, "alice", "secret"))

	t.Run("right password", func(t *testing.T) {
		self := peerID(t, good)
		if v, err := good.Version(t.Context()); err != nil || v.Version != "1.1.6" {
			t.Errorf("Version = %+v, %v", v, err)
		}
		if ids, err := collect(func(out chan<- api.ID) error { return good.Peers(t.Context(), out) }); err != nil || len(ids) != 1 {
			t.Errorf("Peers = %d peers, %v", len(ids), err)
		}
		ci := addPinned(t, good, k, "secret.txt", []byte("for alice only\n"), nil)
		if _, err := good.Pin(t.Context(), ci, api.PinOptions{Name: "alice's"}); err != nil {
			t.Errorf("Pin: %v", err)
		}
		if p, err := good.Allocation(t.Context(), ci); err != nil || p.Name != "alice's" {
			t.Errorf("Allocation = %q, %v", p.Name, err)
		}
		if pins, err := collect(func(out chan<- api.Pin) error { return good.Allocations(t.Context(), api.AllType, out) }); err != nil || len(pins) != 1 {
			t.Errorf("Allocations = %d pins, %v", len(pins), err)
		}
		if gpi, err := good.Status(t.Context(), ci, false); err != nil {
			t.Errorf("Status: %v", err)
		} else if st := statusOf(t, gpi, self).Status; st != api.TrackerStatusPinned {
			t.Errorf("Status = %s, want pinned", st)
		}
		if gpis, err := collect(func(out chan<- api.GlobalPinInfo) error {
			return good.StatusAll(t.Context(), api.TrackerStatusUndefined, false, out)
		}); err != nil || len(gpis) != 1 {
			t.Errorf("StatusAll = %d items, %v", len(gpis), err)
		}
		if _, err := good.Recover(t.Context(), ci, false); err != nil {
			t.Errorf("Recover: %v", err)
		}
		if _, err := good.MetricNames(t.Context()); err != nil {
			t.Errorf("MetricNames: %v", err)
		}
		if _, err := good.Unpin(t.Context(), ci); err != nil {
			t.Errorf("Unpin: %v", err)
		}
		if err := good.Health(t.Context()); err != nil {
			t.Errorf("Health: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		bad := newClient(t, withAuth(s, "alice", "wrong"))
		_, err := bad.ID(t.Context())
		if ae := wantAPIError(t, "ID", err, 401); ae.Message != "unauthorized: access denied" {
			t.Errorf("ID: message %q, want %q (spec §3.1)", ae.Message, "unauthorized: access denied")
		}
		_, err = bad.Version(t.Context())
		wantAPIError(t, "Version", err, 401)
		_, err = collect(func(out chan<- api.ID) error { return bad.Peers(t.Context(), out) })
		wantAPIError(t, "Peers", err, 401)
		_, err = bad.MetricNames(t.Context())
		wantAPIError(t, "MetricNames", err, 401)
		_, err = bad.RepoGC(t.Context(), false)
		wantAPIError(t, "RepoGC", err, 401)

		dir := t.TempDir()
		writeTree(t, dir, tree{"intruder.txt": "should not be stored\n"})
		intruder := root(k.add(t, dir, nil, "intruder.txt"))
		_, err = collect(func(out chan<- api.AddedOutput) error {
			return bad.Add(t.Context(), []string{filepath.Join(dir, "intruder.txt")}, api.DefaultAddParams(), out)
		})
		wantAPIError(t, "Add", err, 401)

		ghost := missingCid(t)
		_, err = bad.Pin(t.Context(), ghost, api.PinOptions{})
		wantAPIError(t, "Pin", err, 401)
		_, err = bad.Unpin(t.Context(), ghost)
		wantAPIError(t, "Unpin", err, 401)
		_, err = bad.Allocation(t.Context(), ghost)
		wantAPIError(t, "Allocation", err, 401)
		_, err = collect(func(out chan<- api.Pin) error { return bad.Allocations(t.Context(), api.AllType, out) })
		wantAPIError(t, "Allocations", err, 401)
		_, err = bad.Status(t.Context(), ghost, false)
		wantAPIError(t, "Status", err, 401)
		_, err = collect(func(out chan<- api.GlobalPinInfo) error {
			return bad.StatusAll(t.Context(), api.TrackerStatusUndefined, false, out)
		})
		wantAPIError(t, "StatusAll", err, 401)
		_, err = bad.Recover(t.Context(), ghost, false)
		wantAPIError(t, "Recover", err, 401)

		// GET /health never needs auth (spec §1.2), even with a bad password.
		if err := bad.Health(t.Context()); err != nil {
			t.Errorf("Health with a wrong password: %v, want success", err)
		}
		// The rejected requests changed nothing.
		_, err = good.Allocation(t.Context(), ghost)
		wantAPIError(t, "Allocation of what a rejected Pin named", err, 404)
		_, err = good.Allocation(t.Context(), mustCid(t, intruder))
		wantAPIError(t, "Allocation of what a rejected Add sent", err, 404)
	})

	t.Run("other rejected credentials", func(t *testing.T) {
		for _, tc := range []struct{ name, user, pass string }{
			{"no credentials", "", ""},
			{"unknown user", "mallory", "secret"},
			{"empty password", "alice", ""}, // always rejected (spec §3.1)
		} {
			_, err := newClient(t, withAuth(s, tc.user, tc.pass)).ID(t.Context())
			wantAPIError(t, "ID with "+tc.name, err, 401)
		}
	})

	t.Run("TLS against the plain HTTP listener", func(t *testing.T) {
		cfg := withAuth(s, "alice", "secret")
		cfg.SSL, cfg.NoVerifyCert = true, true
		// ingestd serves plain HTTP here; the client's TLS handshake fails,
		// which it reports as a transport error (code 0), not an HTTP one.
		_, err := newClient(t, cfg).ID(t.Context())
		wantAPIError(t, "ID over TLS", err, 0)
	})
}
