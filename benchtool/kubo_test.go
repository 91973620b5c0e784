package benchtool

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/restapi"
)

// TestRootsEqualKubo runs ingestd (a real REST API server, embedded store)
// and a real kubo daemon side by side on each dataset, files and CARs, and
// checks every root both report against the oracle: `ipfs add
// --only-hash -r` of the same files written to disk, in a third repository,
// with the same options as CLI flags. Runs get distinct roots.
func TestRootsEqualKubo(t *testing.T) {
	daemon := kubotest.StartDaemon(t, kubotest.NewRepo(t))
	oracle := kubotest.NewRepo(t)
	ing := startIngestd(t)
	f := func(ds Dataset, opts url.Values, flags []string, concurrency int) {
		t.Helper()
		if err := ds.Normalize(); err != nil {
			t.Fatal(err)
		}
		cfg := Config{
			Targets: []Target{
				{Name: "ingestd", Kind: Cluster, URL: ing},
				{Name: "kubo", Kind: Kubo, URL: daemon.URL()},
			},
			Dataset: ds, Options: opts, Seed: 5, Repeat: 2, Concurrency: concurrency,
		}
		rep := mustRun(t, cfg)
		if err := rep.Err(); err != nil {
			t.Fatalf("%s %v: %v\n%s", ds.String(), opts, err, reportText(t, rep))
		}
		roots := map[string]bool{}
		for _, run := range rep.Runs {
			dir := t.TempDir()
			if err := ds.WriteFiles(dir, cfg.Seed, run.Seed); err != nil {
				t.Fatal(err)
			}
			ev := oracle.AddOnlyHash(t, dir, append([]string{"-r"}, flags...), ds.Entry(0).Path)
			want := ev[len(ev)-1].Hash
			for _, a := range run.Results {
				if a.Root != want {
					t.Fatalf("%s %v run %d: %s reports %s, ipfs add --only-hash %s", ds.String(), opts, run.Run, a.Target, a.Root, want)
				}
			}
			roots[want] = true
		}
		if len(roots) != len(rep.Runs) || len(rep.Runs) != 2*concurrency {
			t.Fatalf("%d runs, %d distinct roots", len(rep.Runs), len(roots))
		}
	}
	f(Dataset{Kind: KindFile, FileSize: 3<<20 + 7}, nil, nil, 1)
	f(Dataset{Kind: KindFile, FileSize: 1<<20 + 1}, url.Values{"chunker": {"size-65536"}, "raw-leaves": {"true"}},
		[]string{"--chunker=size-65536", "--raw-leaves=true"}, 1)
	f(Dataset{Kind: KindTree, Dirs: 4, Files: 6}, url.Values{"cid-version": {"1"}}, []string{"--cid-version=1"}, 2)
	f(Dataset{Kind: KindDeep, Depth: 30, Files: 2, FileSize: 1000}, nil, nil, 1)
	f(Dataset{Kind: KindTree, Dirs: 3, Files: 4, FileSize: 300 << 10, CAR: true}, url.Values{"cid-version": {"1"}}, []string{"--cid-version=1"}, 2)
	f(Dataset{Kind: KindDeep, Depth: 10, Files: 1, CAR: true}, nil, nil, 1)
	f(Dataset{Kind: KindFile, FileSize: 2 << 20, CAR: true}, nil, nil, 1)
}

// TestOptionKuboIgnoresIsAMismatch: kubo's /api/v0/add ignores parameters
// it does not know (profile is ingestd's), so the two build different
// DAGs; the run must say so rather than report two speeds.
func TestOptionKuboIgnoresIsAMismatch(t *testing.T) {
	daemon := kubotest.StartDaemon(t, kubotest.NewRepo(t))
	rep := mustRun(t, Config{
		Targets: []Target{
			{Name: "ingestd", Kind: Cluster, URL: startIngestd(t)},
			{Name: "kubo", Kind: Kubo, URL: daemon.URL()},
		},
		Dataset: Dataset{Kind: KindTree, Dirs: 2, Files: 2},
		Options: url.Values{"profile": {"unixfs-v1-2025"}},
		Repeat:  1,
	})
	if rep.Errors != 0 || rep.Mismatches != 1 || !errors.Is(rep.Err(), ErrCIDMismatch) {
		t.Fatalf("errors %d, mismatches %d: %v\n%s", rep.Errors, rep.Mismatches, rep.Err(), reportText(t, rep))
	}
}

// TestRealTargetErrors: a real ingestd or kubo that refuses an add (an
// option it rejects before reading: 400/500; a body it fails on after the
// 200: X-Stream-Error) is an error of that run, not a fast run, while the
// other target is measured.
func TestRealTargetErrors(t *testing.T) {
	daemon := kubotest.StartDaemon(t, kubotest.NewRepo(t))
	ing := startIngestd(t)
	f := func(opts url.Values, bad string, check func(error) bool) {
		t.Helper()
		rep := mustRun(t, Config{
			Targets: []Target{
				{Name: "ingestd", Kind: Cluster, URL: ing},
				{Name: "kubo", Kind: Kubo, URL: daemon.URL()},
			},
			Dataset: Dataset{Kind: KindFile, FileSize: 1 << 20},
			Options: opts,
			Repeat:  2,
		})
		if !errors.Is(rep.Err(), ErrAddFailed) {
			t.Fatalf("%v: Err() = %v", opts, rep.Err())
		}
		for ti, tr := range rep.Targets {
			failed := tr.Name == bad || bad == "both"
			if failed != (tr.Errors == 2) || failed != (tr.Rounds == 0) || failed != (tr.MBps == 0) {
				t.Fatalf("%v: %s: %+v", opts, tr.Name, tr)
			}
			for _, run := range rep.Runs {
				if a := run.Results[ti]; failed && (a.Root != "" || !check(a.Err)) {
					t.Fatalf("%v: %s run %d: %+v (%v)", opts, tr.Name, run.Run, a, a.Err)
				}
			}
		}
	}
	httpStatus := func(code int) func(error) bool {
		return func(err error) bool {
			var he *HTTPError
			return errors.As(err, &he) && he.Code == code
		}
	}
	// ingestd: 400 before reading; kubo ignores layout.
	f(url.Values{"layout": {"bogus"}}, "ingestd", httpStatus(400))
	// ingestd: the file is not a CAR, found after the 200; kubo ignores format.
	f(url.Values{"format": {"car"}}, "ingestd", func(err error) bool { return errors.Is(err, ErrStream) })
	// Both refuse the chunker: ingestd 400, kubo 500.
	f(url.Values{"chunker": {"bogus"}}, "both", func(err error) bool { return httpStatus(400)(err) || httpStatus(500)(err) })
}

// TestAuth: Basic auth (flag or URL) and a token from POST /token reach an
// ingestd that requires them; without them, or with a bad token, the add
// is an error (401).
func TestAuth(t *testing.T) {
	ing := startIngestd(t, func(c *restapi.Config) { c.BasicAuth = map[string]string{"alice": "s3cret"} })
	req, _ := http.NewRequest(http.MethodPost, ing+"/token", nil)
	req.SetBasicAuth("alice", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.Token == "" {
		t.Fatalf("POST /token: %v %+v", err, tok)
	}
	withCreds := strings.Replace(ing, "http://", "http://alice:s3cret@", 1)
	f := func(tg Target, ok bool) {
		t.Helper()
		tg.Name, tg.Kind = "ingestd", Cluster
		rep, err := Run(context.Background(), Config{Targets: []Target{tg}, Dataset: Dataset{Kind: KindFile, FileSize: 1000}, Repeat: 1})
		if err != nil {
			t.Fatal(err)
		}
		a := rep.Runs[0].Results[0]
		var he *HTTPError
		if ok != (a.Error == "") || (!ok && (!errors.As(a.Err, &he) || he.Code != 401)) {
			t.Fatalf("%+v: ok %v: %+v", tg, ok, a)
		}
	}
	f(Target{URL: ing}, false)
	f(Target{URL: ing, BasicAuth: "alice:s3cret"}, true)
	f(Target{URL: withCreds}, true)
	f(Target{URL: ing, BasicAuth: "alice:wrong"}, false)
	f(Target{URL: ing, Token: tok.Token}, true)
	f(Target{URL: ing, Token: tok.Token + "x"}, false)
}
