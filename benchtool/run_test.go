package benchtool

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestInterleavedOrder: with two targets, every round runs all of its
// concurrent adds on A, then the same contents on B (A A B B A A B B …);
// A and B get the same bytes for the same run and every run has other
// bytes than the others.
func TestInterleavedOrder(t *testing.T) {
	rec := &recorder{}
	cfg := Config{
		Targets: []Target{
			{Name: "A", Kind: Cluster, URL: fakeCluster(t, "A", rec, "")},
			{Name: "B", Kind: Cluster, URL: fakeCluster(t, "B", rec, "")},
		},
		Dataset:     Dataset{Kind: KindTree, Dirs: 2, Files: 3, FileSize: 1000},
		Repeat:      3,
		Concurrency: 2,
	}
	rep := mustRun(t, cfg)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	want := strings.Fields("A A B B A A B B A A B B")
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	roots := map[string]bool{}
	for _, run := range rep.Runs {
		if len(run.Results) != 2 || run.Results[0].Target != "A" || run.Results[1].Target != "B" {
			t.Fatalf("run %d results %+v", run.Run, run.Results)
		}
		if !run.Agree || run.Results[0].Root != run.Results[1].Root {
			t.Fatalf("run %d: A and B got different bodies: %+v", run.Run, run.Results)
		}
		roots[run.Results[0].Root] = true
	}
	if len(rep.Runs) != 6 || len(roots) != 6 {
		t.Fatalf("%d runs with %d distinct bodies, want 6 and 6", len(rep.Runs), len(roots))
	}
	for _, tr := range rep.Targets {
		if tr.Adds != 6 || tr.Errors != 0 || tr.Rounds != 3 || tr.Files != 36 || tr.Bytes != 36000 || tr.MBps <= 0 {
			t.Fatalf("target summary %+v", tr)
		}
	}
}

// TestCIDMismatchIsReported: targets that answer different roots for the
// same content make every run a mismatch, Err wrap ErrCIDMismatch, and the
// text report say so loudly.
func TestCIDMismatchIsReported(t *testing.T) {
	rep := mustRun(t, Config{
		Targets: []Target{
			{Name: "A", Kind: Cluster, URL: fakeCluster(t, "A", nil, "")},
			{Name: "B", Kind: Cluster, URL: fakeCluster(t, "B", nil, "other")},
		},
		Dataset: Dataset{Kind: KindFile, FileSize: 10000},
		Repeat:  2,
	})
	if rep.Mismatches != 2 || !errors.Is(rep.Err(), ErrCIDMismatch) || errors.Is(rep.Err(), ErrAddFailed) {
		t.Fatalf("mismatches %d, err %v", rep.Mismatches, rep.Err())
	}
	for _, run := range rep.Runs {
		if run.Agree {
			t.Fatalf("run %d agrees: %+v", run.Run, run.Results)
		}
	}
	if txt := reportText(t, rep); !strings.Contains(txt, "CID MISMATCH") {
		t.Fatalf("no mismatch in the report:\n%s", txt)
	}
}

// TestBrokenResponsesAreErrors: answers that are not a completed add are
// errors of the run, their rounds are left out of the throughput, and the
// other target is measured as usual.
func TestBrokenResponsesAreErrors(t *testing.T) {
	ndjson := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Trailer", "X-Stream-Error")
	}
	good := `{"name":"tree/d0/f0","cid":"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o","size":20}` + "\n"
	f := func(name string, h http.HandlerFunc, check func(error) bool) {
		t.Helper()
		u := closedURL(t)
		if h != nil {
			u = fakeRaw(t, h)
		}
		rep := mustRun(t, Config{
			Targets: []Target{
				{Name: "bad", Kind: Cluster, URL: u},
				{Name: "ok", Kind: Cluster, URL: fakeCluster(t, "ok", nil, "")},
			},
			Dataset: Dataset{Kind: KindTree, Dirs: 1, Files: 2, FileSize: 100},
			Repeat:  2,
		})
		bad, ok := rep.Targets[0], rep.Targets[1]
		if bad.Errors != 2 || bad.Rounds != 0 || bad.MBps != 0 || bad.Ratio != 0 || bad.LatencySec.Max != 0 {
			t.Fatalf("%s: bad target counted: %+v", name, bad)
		}
		if ok.Errors != 0 || ok.Rounds != 2 || ok.MBps <= 0 {
			t.Fatalf("%s: good target: %+v", name, ok)
		}
		if !errors.Is(rep.Err(), ErrAddFailed) {
			t.Fatalf("%s: Err() = %v", name, rep.Err())
		}
		for _, run := range rep.Runs {
			if a := run.Results[0]; a.Root != "" || !check(a.Err) {
				t.Fatalf("%s: result %+v (%v)", name, a, a.Err)
			}
		}
	}
	isStream := func(err error) bool { return errors.Is(err, ErrStream) }
	f("trailer", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		ndjson(w)
		io.WriteString(w, good)
		w.Header().Set("X-Stream-Error", "cannot put block: disk full")
	}, isStream)
	f("error object in the stream", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		ndjson(w)
		io.WriteString(w, good+`{"code":500,"message":"cannot pin"}`+"\n")
	}, isStream)
	f("kubo error object", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		ndjson(w)
		io.WriteString(w, good+`{"Message":"cannot add","Code":0,"Type":"error"}`+"\n")
	}, isStream)
	f("HTTP 500", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, `{"code":500,"message":"no space"}`)
	}, func(err error) bool {
		var he *HTTPError
		return errors.As(err, &he) && he.Code == 500 && he.Message == "no space"
	})
	f("no root", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		ndjson(w)
		io.WriteString(w, `{"name":"","cid":null,"bytes":262144}`+"\n")
	}, func(err error) bool { return errors.Is(err, ErrNoRoot) })
	f("connection cut after a root", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		ndjson(w)
		io.WriteString(w, good)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // no last chunk: the body is truncated
		}
	}, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) })
	f("not JSON", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "<html>proxy error</html>\n")
	}, func(err error) bool {
		var se *json.SyntaxError
		return errors.As(err, &se)
	})
	f("line too long", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		bw := bufio.NewWriter(w)
		bw.WriteString(`{"name":"` + strings.Repeat("x", DefaultMaxLineSize) + `"}` + "\n")
		bw.Flush()
	}, func(err error) bool { return errors.Is(err, bufio.ErrTooLong) })
	f("connection refused", nil, func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) })
}
