package benchtool

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	f := func(s string, want Target, ok bool) {
		t.Helper()
		got, err := ParseTarget(s)
		if (err == nil) != ok || (ok && got != want) {
			t.Fatalf("ParseTarget(%q) = %+v, %v; want %+v (ok %v)", s, got, err, want, ok)
		}
	}
	f("ingestd=cluster:http://127.0.0.1:9094", Target{Name: "ingestd", Kind: Cluster, URL: "http://127.0.0.1:9094"}, true)
	f("kubo:http://127.0.0.1:5001/", Target{Name: "kubo", Kind: Kubo, URL: "http://127.0.0.1:5001/"}, true)
	f("c=cluster:https://u:p@h:9094", Target{Name: "c", Kind: Cluster, URL: "https://u:p@h:9094"}, true)
	f("cluster:http://h:9094/?a=b", Target{Name: "cluster", Kind: Cluster, URL: "http://h:9094/?a=b"}, true)
	f("x=ipfs:http://h:5001", Target{}, false)
	f("=cluster:http://h", Target{}, false)
	f("cluster:ftp://h", Target{}, false)
	f("cluster:http://", Target{}, false)
	f("http://h:9094", Target{}, false)
}

func TestAuthorization(t *testing.T) {
	f := func(tg Target, want string) {
		t.Helper()
		if got := tg.authorization(); got != want {
			t.Fatalf("%+v: %q, want %q", tg, got, want)
		}
	}
	f(Target{URL: "http://h"}, "")
	f(Target{URL: "http://alice:s3cret@h"}, "Basic YWxpY2U6czNjcmV0")
	f(Target{URL: "http://alice:s%40cret@h"}, "Basic YWxpY2U6c0BjcmV0") // alice:s@cret
	f(Target{URL: "http://bob:x@h", BasicAuth: "alice:s3cret"}, "Basic YWxpY2U6czNjcmV0")
	f(Target{URL: "http://bob:x@h", BasicAuth: "alice:s3cret", Token: "T"}, "Bearer T")
	if tg := (Target{URL: "http://alice:s3cret@h:1/x/"}); !strings.HasSuffix(mustBase(t, tg), "h:1/x") || strings.Contains(mustBase(t, tg), "s3cret") {
		t.Fatalf("base %q", mustBase(t, tg))
	}
}

func mustBase(t *testing.T, tg Target) string {
	u, err := tg.base()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

func TestPercentiles(t *testing.T) {
	f := func(xs []float64, want Latency) {
		t.Helper()
		if got := percentiles(xs); got != want {
			t.Fatalf("percentiles(%v) = %+v, want %+v", xs, got, want)
		}
	}
	f(nil, Latency{})
	f([]float64{3}, Latency{3, 3, 3, 3})
	f([]float64{4, 1, 3, 2}, Latency{P50: 2, P90: 4, P99: 4, Max: 4})
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100 … 1
	}
	f(xs, Latency{P50: 50, P90: 90, P99: 99, Max: 100})
}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if IsTerminal(w) || IsTerminal(null) {
		t.Fatal("a pipe or /dev/null taken for a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		if !IsTerminal(tty) {
			t.Fatal("/dev/tty not taken for a terminal")
		}
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine("ingestd 2/3", 1<<30, 3<<30, 2*time.Second)
	want := "[ingestd 2/3] 1 GiB / 3 GiB  536.9 MB/s  ETA 4s"
	if got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
