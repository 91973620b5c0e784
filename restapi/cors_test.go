package restapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const (
	testOrigin      = "http://app.example"
	wantExposed     = "Content-Type, X-Stream-Output, X-Chunked-Output, X-Content-Length"
	wantPreflightVy = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// corsHeaders returns the response's Access-Control-* headers.
func corsHeaders(h http.Header) map[string][]string {
	m := map[string][]string{}
	for k, v := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			m[k] = v
		}
	}
	return m
}

func checkCORS(t *testing.T, what string, r wireResp, vary []string, want map[string]string) {
	t.Helper()
	if got := r.header.Values("Vary"); !slices.Equal(got, vary) {
		t.Errorf("%s: Vary %q, want %q", what, got, vary)
	}
	got := corsHeaders(r.header)
	for k, v := range want {
		if g := got[k]; len(g) != 1 || g[0] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, g, v)
		}
		delete(got, k)
	}
	if len(got) > 0 {
		t.Errorf("%s: unexpected CORS headers %q", what, got)
	}
}

// allowed is what a preflight that passes gets, with its method echoed.
func allowed(method string) map[string]string {
	return map[string]string{
		"Access-Control-Allow-Origin":      "*",
		"Access-Control-Allow-Methods":     method,
		"Access-Control-Allow-Credentials": "true",
	}
}

// TestCORSPreflight: a preflight is answered 204 without reaching the
// routes or auth, with rs/cors' headers exactly — and with only Vary when
// the origin is missing or the method or a header is not allowed.
func TestCORSPreflight(t *testing.T) {
	for _, auth := range []bool{false, true} {
		var mutate []func(*Config)
		if auth {
			mutate = append(mutate, withAuth(testCreds))
		}
		ts := startServer(t, mutate...)
		f := func(name string, want map[string]string, hdr ...string) {
			t.Helper()
			r := request(t, "OPTIONS", ts.url+"/pins", hdr...)
			if r.status != 204 || r.body != "" || r.header.Get("Content-Type") != "" {
				t.Errorf("auth=%v %s: %d %q Content-Type %q", auth, name, r.status, r.body, r.header.Get("Content-Type"))
			}
			checkCORS(t, name, r, []string{wantPreflightVy}, want)
		}
		f("GET", allowed("GET"), "Origin", testOrigin, "Access-Control-Request-Method", "GET")
		f("OPTIONS", allowed("OPTIONS"), "Origin", testOrigin, "Access-Control-Request-Method", "OPTIONS")
		withHeaders := allowed("GET")
		withHeaders["Access-Control-Allow-Headers"] = "accept, content-type"
		f("allowed headers", withHeaders, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "accept, content-type")
		xrw := allowed("GET")
		xrw["Access-Control-Allow-Headers"] = "x-requested-with"
		f("x-requested-with", xrw, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "x-requested-with")
		f("no origin", nil, "Access-Control-Request-Method", "GET")
		f("POST", nil, "Origin", testOrigin, "Access-Control-Request-Method", "POST")
		f("lower-case get", nil, "Origin", testOrigin, "Access-Control-Request-Method", "get")
		f("authorization", nil, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "authorization")
		f("authorization among allowed", nil, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "accept,authorization")
		f("not lower case", nil, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "Content-Type")
		f("not sorted", nil, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "content-type,accept")
		f("repeated", nil, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "accept,accept")
		f("two spaces", nil, "Origin", testOrigin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "accept  ,content-type")
	}
}

// TestCORSActualRequests: Vary: Origin on everything past auth; the CORS
// headers only with an Origin and an allowed method, including on a
// stream; a POST with an Origin runs, without them.
func TestCORSActualRequests(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	alice := basic("alice", "secret")
	actual := map[string]string{
		"Access-Control-Allow-Origin":      "*",
		"Access-Control-Expose-Headers":    wantExposed,
		"Access-Control-Allow-Credentials": "true",
	}

	r := request(t, "GET", ts.url+"/id", "Authorization", alice, "Origin", testOrigin)
	if r.status != 200 {
		t.Fatalf("GET /id: %d %q", r.status, r.body)
	}
	checkCORS(t, "GET with Origin", r, []string{"Origin"}, actual)

	r = request(t, "GET", ts.url+"/id", "Authorization", alice)
	checkCORS(t, "GET without Origin", r, []string{"Origin"}, nil)

	r = request(t, "GET", ts.url+"/health", "Origin", testOrigin)
	if r.status != 204 {
		t.Fatalf("GET /health: %d", r.status)
	}
	checkCORS(t, "GET /health with Origin", r, []string{"Origin"}, actual)

	r = request(t, "GET", ts.url+"/nope", "Authorization", alice, "Origin", testOrigin)
	if r.status != 404 {
		t.Fatalf("GET /nope: %d", r.status)
	}
	checkCORS(t, "404 with Origin", r, []string{"Origin"}, actual)

	// A POST with an Origin is executed, without CORS headers: the add
	// below stores and pins its file.
	ct, b := body(part{name: "cors.txt", body: []byte("cross-origin upload\n")})
	req, _ := http.NewRequest("POST", ts.url+"/add", bytes.NewReader(b))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", alice)
	req.Header.Set("Origin", testOrigin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct{ Cid string }
	if resp.StatusCode != 200 || json.Unmarshal(bytes.TrimSpace(raw), &out) != nil || out.Cid == "" {
		t.Fatalf("POST /add with Origin: %d %q", resp.StatusCode, raw)
	}
	checkCORS(t, "POST /add with Origin", wireResp{header: resp.Header}, []string{"Origin"}, nil)

	r = request(t, "POST", ts.url+"/token", "Authorization", alice, "Origin", testOrigin)
	if r.status != 200 {
		t.Fatalf("POST /token: %d", r.status)
	}
	checkCORS(t, "POST /token with Origin", r, []string{"Origin"}, nil)

	// The stream of allocations, now holding the add's pin, carries the
	// headers set before the stream started.
	r = request(t, "GET", ts.url+"/allocations", "Authorization", alice, "Origin", testOrigin)
	if r.status != 200 || !strings.Contains(r.body, out.Cid) {
		t.Fatalf("GET /allocations: %d %q", r.status, r.body)
	}
	checkCORS(t, "stream with Origin", r, []string{"Origin"}, actual)

	// HEAD is not an allowed method.
	r = request(t, "HEAD", ts.url+"/id", "Authorization", alice, "Origin", testOrigin)
	checkCORS(t, "HEAD with Origin", r, []string{"Origin"}, nil)
}
