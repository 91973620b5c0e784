package kuborpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// The tests in this file cover what a real kubo cannot be made to do: an
// overlong line, Retry-After, stream-error trailers, answers that do not
// match. Everything else is tested against kubo in kubo_test.go.

func rawCid(t testing.TB, data []byte) cid.Cid {
	t.Helper()
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// fakeKubo serves handler on 127.0.0.1 and counts its requests.
type fakeKubo struct {
	srv *httptest.Server
	mu  sync.Mutex
	at  []time.Time // when each request came
}

func newFakeKubo(t testing.TB, handler http.HandlerFunc) (*fakeKubo, *Client) {
	t.Helper()
	k := &fakeKubo{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.at = append(k.at, time.Now())
		k.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(k.srv.Close)
	return k, newClient(t, k.srv.URL)
}

func (k *fakeKubo) requests() []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.at)
}

// kuboError answers as kubo does before any output: a status and
// {"Message","Code","Type"}.
func kuboError(status int, msg string, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"Message": msg, "Code": 0, "Type": "error"})
	}
}

// streamErrorAfter writes lines, then fails in the X-Stream-Error trailer
// as kubo does for errors after its answer began.
func streamErrorAfter(msg string, lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", StreamErrorTrailer)
		for _, l := range lines {
			io.WriteString(w, l+"\n")
		}
		w.Header().Set(StreamErrorTrailer, msg)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	f := func(u, wantURL, wantErr string) {
		t.Helper()
		c, err := New(u, nil)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("New(%q) error = %v, want one containing %q", u, err, wantErr)
			}
			return
		}
		if err != nil || c.URL() != wantURL {
			t.Errorf("New(%q) = %v, %v; want URL %q", u, c, err, wantURL)
		}
	}
	f("http://127.0.0.1:5001", "http://127.0.0.1:5001", "")
	f("https://kubo.internal:5001/", "https://kubo.internal:5001", "")
	f("http://h:5001/prefix//", "http://h:5001/prefix", "")
	f("127.0.0.1:5001", "", "cannot parse")
	f("ftp://h:5001", "", "want http(s)://host:port")
	f("http:///api", "", "want http(s)://host:port")
	f("http://h:5001/?x=1", "", "want http(s)://host:port")
	f("http://h:5001/?", "", "want http(s)://host:port")
	f("http://h:5001/#f", "", "want http(s)://host:port")
}

func TestLineReader(t *testing.T) {
	t.Parallel()
	f := func(name string, r io.Reader, want []string, wantErr error) {
		t.Run(name, func(t *testing.T) {
			t.Helper()
			lr := NewLineReader(r)
			var got []string
			var err error
			for {
				var line []byte
				if line, err = lr.Next(); err != nil {
					break
				}
				got = append(got, string(line))
			}
			if !slices.Equal(got, want) || !errors.Is(err, wantErr) {
				t.Errorf("lines = %.30q, %v; want %.30q, %v", got, err, want, wantErr)
			}
		})
	}
	long := strings.Repeat("x", 10000)
	f("lines", strings.NewReader("a\n\n  b  \r\n"+long+"\nlast"), []string{"a", "b", long, "last"}, io.EOF)
	f("data and EOF in one read", iotest.DataErrReader(strings.NewReader("1\n2\n3")), []string{"1", "2", "3"}, io.EOF)
	f("one byte at a time", iotest.OneByteReader(strings.NewReader("{}\n{\"a\":1}\n")), []string{"{}", `{"a":1}`}, io.EOF)
	f("read error", io.MultiReader(strings.NewReader("ok\npartial"), iotest.ErrReader(io.ErrUnexpectedEOF)), []string{"ok"}, io.ErrUnexpectedEOF)
	f("longest line", strings.NewReader(strings.Repeat("y", MaxLineSize-1)+"\nz"), []string{strings.Repeat("y", MaxLineSize-1), "z"}, io.EOF)

	_, err := NewLineReader(strings.NewReader(strings.Repeat("y", MaxLineSize) + "\n")).Next()
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "line longer than") {
		t.Errorf("overlong line: error = %v, want a permanent one", err)
	}
}

// TestOverlongAnswer: a daemon that sends a line of 2 MiB is cut off at
// MaxLineSize, for single-object calls and for streams.
func TestOverlongAnswer(t *testing.T) {
	t.Parallel()
	_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ID":"`+strings.Repeat("a", 2<<20)+`"}`+"\n")
	})
	_, err := c.ID(context.Background())
	if !IsPermanent(err) || !strings.Contains(err.Error(), "line longer than") || !strings.Contains(err.Error(), c.URL()) {
		t.Errorf("ID: %v; want a permanent overlong-line error naming %s", err, c.URL())
	}
	err = c.PinLs(context.Background(), "recursive", func(cid.Cid, string) error { return nil })
	if !IsPermanent(err) || !strings.Contains(err.Error(), "line longer than") {
		t.Errorf("PinLs: %v; want a permanent overlong-line error", err)
	}
}

// TestErrorBody: an error answer's body is read up to MaxErrorBody, and
// a body that is not kubo's JSON is the message.
func TestErrorBody(t *testing.T) {
	t.Parallel()
	_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, strings.Repeat("z", 1<<20))
	})
	err := c.CallJSON(context.Background(), "id", nil, nil)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusBadGateway || len(he.Message) != MaxErrorBody || IsPermanent(err) {
		t.Errorf("CallJSON: %.200v; want a transient HTTP 502 with a %d-byte message", err, MaxErrorBody)
	}
}

// TestRetryAfter: a 503 with Retry-After is retried after that long; one
// beyond maxWait gives up at once.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	k, c := newFakeKubo(t, kuboError(http.StatusServiceUnavailable, "busy", map[string]string{"Retry-After": "1"}))
	call := func() error { return c.CallJSON(context.Background(), "id", nil, nil) }

	err := Retry(context.Background(), 1, time.Minute, call)
	var he *HTTPError
	if !errors.As(err, &he) || he.RetryAfter != time.Second || he.Message != "busy" || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("Retry: %v; want HTTP 503 busy after 2 attempts", err)
	}
	at := k.requests()
	if len(at) != 2 {
		t.Fatalf("%d requests, want 2", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
		t.Errorf("retried after %v, want the 1s of Retry-After", gap)
	}

	err = Retry(context.Background(), 5, 500*time.Millisecond, call)
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "beyond the longest wait") {
		t.Errorf("Retry with maxWait 500ms: %v; want it to give up", err)
	}
	if n := len(k.requests()); n != 3 {
		t.Errorf("%d requests in all, want 3: no retry beyond maxWait", n)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	transient := errors.New("connection reset")
	f := func(name string, maxRetries int, errs []error, wantCalls int, wantErr error, wantMsg string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			err := Retry(context.Background(), maxRetries, 0, func() error {
				calls++
				return errs[min(calls, len(errs))-1]
			})
			if calls != wantCalls || !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
				t.Errorf("Retry = %v after %d calls, want %v after %d", err, calls, wantErr, wantCalls)
			}
			if err != nil && !strings.Contains(err.Error(), wantMsg) {
				t.Errorf("Retry = %v, want it to mention %q", err, wantMsg)
			}
		})
	}
	f("success at once", 3, []error{nil}, 1, nil, "")
	f("success after two failures", 3, []error{transient, transient, nil}, 3, nil, "")
	f("retries run out", 2, []error{transient}, 3, transient, "gave up after 3 attempts")
	f("no retries", 0, []error{transient}, 1, transient, "gave up after 1 attempts")
	perm := Permanent(errors.New("bad request"))
	f("permanent", 3, []error{transient, perm}, 2, perm, "bad request")
	bad := &HTTPError{Cmd: "pin/add", Status: 400, Message: "invalid path"}
	f("HTTP 400", 3, []error{bad}, 1, bad, "HTTP 400")
	f("HTTP 429 is retried", 1, []error{&HTTPError{Cmd: "pin/add", Status: 429}, nil}, 2, nil, "")

	// A canceled context ends the retries with its cause.
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	calls := 0
	err := Retry(ctx, 10, 0, func() error {
		calls++
		if calls == 2 {
			cancel(cause)
		}
		return transient
	})
	if err != cause || calls != 2 {
		t.Errorf("Retry = %v after %d calls, want the cause after 2", err, calls)
	}
}

func TestHTTPErrorPermanent(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{400: true, 404: true, 405: true, 408: false, 429: false, 500: false, 503: false} {
		if got := IsPermanent(&HTTPError{Status: status}); got != want {
			t.Errorf("IsPermanent(HTTP %d) = %v, want %v", status, got, want)
		}
	}
	if IsPermanent(errors.New("x")) || IsPermanent(nil) || Permanent(nil) != nil {
		t.Errorf("plain errors and nil are not permanent")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	plain := errors.New("x")
	for _, tc := range []struct {
		attempt int
		err     error
		want    time.Duration
	}{
		{1, plain, 100 * time.Millisecond},
		{2, plain, 200 * time.Millisecond},
		{3, plain, 400 * time.Millisecond},
		{6, plain, 3200 * time.Millisecond},
		{7, plain, 5 * time.Second},
		{100, plain, 5 * time.Second},
		{0, plain, 100 * time.Millisecond},
		{1, &HTTPError{Status: 503, RetryAfter: 7 * time.Second}, 7 * time.Second},
		{1, &HTTPError{Status: 503}, 100 * time.Millisecond},
	} {
		if got := Backoff(tc.attempt, tc.err); got != tc.want {
			t.Errorf("Backoff(%d, %v) = %v, want %v", tc.attempt, tc.err, got, tc.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	if got := parseRetryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); got < 59*time.Minute || got > time.Hour {
		t.Errorf("HTTP date an hour ahead: %v", got)
	}
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "soon": 0, "Mon, 01 Jan 2001 00:00:00 GMT": 0} {
		if got := parseRetryAfter(v); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestStreamError: an error in the X-Stream-Error trailer fails the call
// even after a good answer.
func TestStreamError(t *testing.T) {
	t.Parallel()
	k := rawCid(t, []byte("k"))
	f := func(name string, handler http.HandlerFunc, call func(*Client) error) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, c := newFakeKubo(t, handler)
			err := call(c)
			var se *StreamError
			if !errors.As(err, &se) || se.Message != "disk on fire" || !strings.Contains(err.Error(), c.URL()) {
				t.Errorf("error = %v, want the trailer's message, naming %s", err, c.URL())
			}
		})
	}
	f("CallJSON", streamErrorAfter("disk on fire", `{"ID":"x"}`), func(c *Client) error {
		return c.CallJSON(context.Background(), "id", nil, nil)
	})
	f("CallJSON without output", streamErrorAfter("disk on fire"), func(c *Client) error {
		return c.CallJSON(context.Background(), "swarm/connect", nil, nil)
	})
	f("PinLs", streamErrorAfter("disk on fire", `{"Cid":"`+k.String()+`","Type":"recursive"}`), func(c *Client) error {
		return c.PinLs(context.Background(), "recursive", func(cid.Cid, string) error { return nil })
	})
	f("PinAdd", streamErrorAfter("disk on fire", `{"Progress":1}`), func(c *Client) error {
		return c.PinAdd(context.Background(), k, true, "", 0)
	})
	f("RepoGC", streamErrorAfter("disk on fire", `{"Key":{"/":"`+k.String()+`"}}`), func(c *Client) error {
		return c.RepoGC(context.Background(), func(cid.Cid, string) {})
	})
}

// TestCallJSONTwoObjects: a single-object call that gets two fails.
func TestCallJSONTwoObjects(t *testing.T) {
	t.Parallel()
	_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "{\"ID\":\"a\"}\n{\"ID\":\"b\"}\n")
	})
	_, err := c.ID(context.Background())
	if err == nil || !strings.Contains(err.Error(), "more than one object") {
		t.Errorf("ID: %v, want an error", err)
	}
}

// TestPinAddAnswers: answers a real kubo does not give.
func TestPinAddAnswers(t *testing.T) {
	t.Parallel()
	k := rawCid(t, []byte("k"))
	other := rawCid(t, []byte("other"))
	f := func(name string, lines []string, wantErr string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
				for _, l := range lines {
					io.WriteString(w, l+"\n")
				}
			})
			err := c.PinAdd(context.Background(), k, true, "", time.Minute)
			if wantErr == "" {
				if err != nil {
					t.Errorf("PinAdd: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("PinAdd: %v, want an error containing %q", err, wantErr)
			}
		})
	}
	f("CIDv0 answer for a CIDv1 pin", []string{`{"Pins":["` + cid.NewCidV0(k.Hash()).String() + `"]}`}, "")
	f("another CID", []string{`{"Pins":["` + other.String() + `"]}`}, "not "+k.String())
	f("no pins", []string{`{"Progress":3}`}, "ended without reporting the pin")
	f("garbage", []string{`{"Progress":"x"}`}, "cannot decode pin/add answer")
}

// TestPinAddProgress: a pin whose progress keeps growing is not stalled,
// however long it takes.
func TestPinAddProgress(t *testing.T) {
	t.Parallel()
	const stall = time.Second
	k := rawCid(t, []byte("k"))
	_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		// 1.5s of progress, one node every 20ms, then the pin.
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for i := range 75 {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			json.NewEncoder(w).Encode(map[string]int{"Progress": i})
			w.(http.Flusher).Flush()
		}
		json.NewEncoder(w).Encode(map[string][]string{"Pins": {k.String()}})
	})
	if err := c.PinAdd(context.Background(), k, true, "", stall); err != nil {
		t.Errorf("PinAdd with growing progress: %v", err)
	}
}

// TestConnectionRefused: nothing listens; the error is transient and names
// the URL.
func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	c := newClient(t, u)
	_, err = c.RepoStat(context.Background())
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), u) {
		t.Errorf("RepoStat: %v; want a transient connection-refused error naming %s", err, u)
	}
}

// TestMissingValues: answers that decode but lack what the call returns.
func TestMissingValues(t *testing.T) {
	t.Parallel()
	f := func(name, answer string, call func(*Client) error, wantErr string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, answer) })
			if err := call(c); err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("error = %v, want one containing %q", err, wantErr)
			}
		})
	}
	k := rawCid(t, []byte("k"))
	f("ID", `{"ID":"","Addresses":[]}`, func(c *Client) error { _, err := c.ID(context.Background()); return err }, "no ID")
	f("Resolve", `{}`, func(c *Client) error { _, err := c.Resolve(context.Background(), "/ipfs/x"); return err }, "no path")
	f("PinLsCid", ``, func(c *Client) error { _, err := c.PinLsCid(context.Background(), k); return err }, "no pin and no error")
	f("RepoGC", `{"Key":null}`, func(c *Client) error { return c.RepoGC(context.Background(), func(cid.Cid, string) {}) }, "neither Key nor Error")
	f("PinLs", `{"Cid":"nope","Type":"recursive"}`, func(c *Client) error {
		return c.PinLs(context.Background(), "recursive", func(cid.Cid, string) error { return nil })
	}, "cannot decode pin/ls entry")
}

// TestRepoGCErrors: errors kubo meets while collecting go to the callback
// and the collection goes on.
func TestRepoGCErrors(t *testing.T) {
	t.Parallel()
	k := rawCid(t, []byte("k"))
	_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Error":"cannot remove block"}`+"\n"+`{"Key":{"/":"`+k.String()+`"}}`+"\n")
	})
	type line struct {
		Key    cid.Cid
		ErrMsg string
	}
	var got []line
	err := c.RepoGC(context.Background(), func(key cid.Cid, errMsg string) { got = append(got, line{key, errMsg}) })
	if want := []line{{cid.Undef, "cannot remove block"}, {k, ""}}; err != nil || !slices.Equal(got, want) {
		t.Errorf("RepoGC = %v, %v; want %v", got, err, want)
	}
}

// TestPinAddStall: a daemon that keeps answering but whose progress does
// not grow is stalled (a real kubo that finds nothing sends no progress at
// all; TestKubo/PinStall covers that).
func TestPinAddStall(t *testing.T) {
	t.Parallel()
	k := rawCid(t, []byte("k"))
	_, c := newFakeKubo(t, func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			json.NewEncoder(w).Encode(map[string]int{"Progress": 1})
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
	})
	err := c.PinAdd(context.Background(), k, true, "", 200*time.Millisecond)
	if !errors.Is(err, ErrStalled) || IsPermanent(err) {
		t.Errorf("PinAdd: %v, want a transient ErrStalled", err)
	}
}
