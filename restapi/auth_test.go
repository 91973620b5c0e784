package restapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// specToken is the token IPFS Cluster 1.1.6 issues to alice/secret (spec
// §3.2, verified on the wire).
const specToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhbGljZSJ9.cyNU8xTEDNzXijU9Vl5LF5aZ1Y2q91Q_q_VmSddkqII"

var testCreds = map[string]string{"alice": "secret", "bob": "pa:ss"}

func withAuth(creds map[string]string) func(*Config) {
	return func(c *Config) { c.BasicAuth = creds }
}

type wireResp struct {
	status int
	header http.Header
	body   string
}

// request sends one request with the given header pairs and returns the
// whole response. It does not follow redirects.
func request(t *testing.T, method, url string, hdr ...string) wireResp {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return wireResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// startSibling serves a second Server over ts's store, pins and hash pool,
// as a restart with another configuration would, on a listener that wrap
// may wrap (nil: plain TCP).
func startSibling(t *testing.T, ts *testServer, wrap func(net.Listener) net.Listener, mutate ...func(*Config)) *testServer {
	t.Helper()
	cfg := ts.srv.cfg
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if wrap != nil {
		ln, scheme = wrap(ln), "https://"
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return &testServer{url: scheme + ln.Addr().String(), store: ts.store, pins: ts.pins, srv: srv}
}

const (
	wantBasicChallenge  = `Basic realm="Restricted IPFS Cluster API"`
	wantBearerChallenge = `Bearer realm="Restricted IPFS Cluster API"`
	wantBadToken        = `Bearer realm="Restricted IPFS Cluster API", error="invalid_token"`
)

// check401 asserts one of the three 401s of spec §3.1, exactly: status,
// error object, Content-Type, the WWW-Authenticate values in order, and no
// CORS header (auth runs before CORS).
func check401(t *testing.T, r wireResp, message string, challenges ...string) {
	t.Helper()
	if r.status != 401 {
		t.Fatalf("status %d, want 401 (body %q)", r.status, r.body)
	}
	if want := `{"code":401,"message":"` + message + `"}` + "\n"; r.body != want {
		t.Errorf("body %q, want %q", r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := r.header.Values("WWW-Authenticate"); !slices.Equal(got, challenges) {
		t.Errorf("WWW-Authenticate %q, want %q", got, challenges)
	}
	for k := range r.header {
		if k == "Vary" || strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("401 carries CORS header %s: %q", k, r.header[k])
		}
	}
}

// TestAuth401Cases: each way of failing auth gets its own IPFS Cluster
// answer; a header that is neither valid Basic nor Bearer counts as none.
func TestAuth401Cases(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	origin := []string{"Origin", "http://example.com"}
	f := func(name, path, authz, message string, challenges ...string) {
		t.Helper()
		hdr := origin
		if authz != "" {
			hdr = append(slices.Clone(origin), "Authorization", authz)
		}
		t.Run(name, func(t *testing.T) {
			check401(t, request(t, "GET", ts.url+path, hdr...), message, challenges...)
		})
	}
	f("none", "/id", "", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("none on unknown path", "/nope", "", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("basic bad base64", "/id", "Basic !!!", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("basic no colon", "/id", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice")), "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("other scheme", "/id", "Digest x", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("wrong password", "/id", basic("alice", "Secret"), "unauthorized: access denied", wantBasicChallenge)
	f("password prefix", "/id", basic("alice", "secre"), "unauthorized: access denied", wantBasicChallenge)
	f("unknown user", "/id", basic("mallory", "secret"), "unauthorized: access denied", wantBasicChallenge)
	f("empty password", "/id", basic("alice", ""), "unauthorized: access denied", wantBasicChallenge)
	f("empty user", "/id", basic("", "secret"), "unauthorized: access denied", wantBasicChallenge)
	f("other user's password", "/id", basic("bob", "secret"), "unauthorized: access denied", wantBasicChallenge)
	f("bearer garbage", "/id", "Bearer garbage", "unauthorized: invalid token", wantBadToken)
	// HTTP trims the trailing space: "Bearer" alone is no scheme at all.
	f("bearer empty", "/id", "Bearer ", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("bearer space", "/id", "Bearer  ", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("health with slash", "/health/", "", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	f("token without auth", "/token", "", "unauthorized: no auth provided", wantBearerChallenge, wantBasicChallenge)
	t.Run("HEAD /health", func(t *testing.T) {
		r := request(t, "HEAD", ts.url+"/health")
		if r.status != 401 || !slices.Equal(r.header.Values("WWW-Authenticate"), []string{wantBearerChallenge, wantBasicChallenge}) {
			t.Fatalf("HEAD /health: %d %q", r.status, r.header.Values("WWW-Authenticate"))
		}
	})
}

// TestAuthBasicAccepted: the right credentials pass, whatever the case of
// the scheme; the password is everything after the first ':'.
func TestAuthBasicAccepted(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	for _, authz := range []string{
		basic("alice", "secret"),
		"basic " + strings.TrimPrefix(basic("alice", "secret"), "Basic "),
		"BASIC " + strings.TrimPrefix(basic("alice", "secret"), "Basic "),
		basic("bob", "pa:ss"),
	} {
		r := request(t, "GET", ts.url+"/id", "Authorization", authz)
		if r.status != 200 || !strings.Contains(r.body, testPeerID) {
			t.Errorf("%q: %d %q", authz, r.status, r.body)
		}
	}
}

// TestAuthOpenRoutes: only the exact GET /health and OPTIONS skip auth.
func TestAuthOpenRoutes(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	if r := request(t, "GET", ts.url+"/health"); r.status != 204 || r.body != "" {
		t.Errorf("GET /health without credentials: %d %q", r.status, r.body)
	}
	if r := request(t, "GET", ts.url+"/health?x=1"); r.status != 204 {
		t.Errorf("GET /health?x=1 without credentials: %d", r.status)
	}
	// An OPTIONS that is not a preflight passes auth and reaches the router.
	if r := request(t, "OPTIONS", ts.url+"/id"); r.status == 401 || r.status == 204 {
		t.Errorf("OPTIONS /id without credentials: %d %q", r.status, r.body)
	}
	r := request(t, "OPTIONS", ts.url+"/id", "Origin", "http://example.com", "Access-Control-Request-Method", "GET")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight without credentials: %d %v", r.status, r.header)
	}
}

// tokenOf calls POST /token and returns the token.
func tokenOf(t *testing.T, url, authz string) string {
	t.Helper()
	r := request(t, "POST", url+"/token", "Authorization", authz)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /token: %d %q %v", r.status, r.body, r.header)
	}
	var v struct{ Token string }
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || v.Token == "" {
		t.Fatalf("POST /token body %q: %v", r.body, err)
	}
	return v.Token
}

// TestTokenIssued: alice/secret gets IPFS Cluster's token byte for byte;
// it authenticates with any case of "Bearer", and /token called with it
// returns it again.
func TestTokenIssued(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	tok := tokenOf(t, ts.url, basic("alice", "secret"))
	if tok != specToken {
		t.Fatalf("token %s\nwant  %s", tok, specToken)
	}
	r := request(t, "POST", ts.url+"/token", "Authorization", basic("alice", "secret"))
	if want := `{"token":"` + specToken + `"}` + "\n"; r.body != want {
		t.Errorf("body %q, want %q", r.body, want)
	}
	for _, scheme := range []string{"Bearer ", "bearer ", "BEARER "} {
		r := request(t, "GET", ts.url+"/id", "Authorization", scheme+tok)
		if r.status != 200 || !strings.Contains(r.body, testPeerID) {
			t.Errorf("%q: %d %q", scheme, r.status, r.body)
		}
	}
	if again := tokenOf(t, ts.url, "Bearer "+tok); again != tok {
		t.Errorf("/token with the token: %s, want %s", again, tok)
	}
	// bob's token is his own, and differs from alice's.
	bobTok := tokenOf(t, ts.url, basic("bob", "pa:ss"))
	if bobTok == tok || request(t, "GET", ts.url+"/id", "Authorization", "Bearer "+bobTok).status != 200 {
		t.Errorf("bob's token %s", bobTok)
	}
	if r := request(t, "GET", ts.url+"/token", "Authorization", basic("alice", "secret")); r.status != 405 || r.body != "" {
		t.Errorf("GET /token: %d %q", r.status, r.body)
	}
}

// TestTokenAuthOff: without credentials configured, every route is open
// but POST /token, which answers IPFS Cluster's bare 401.
func TestTokenAuthOff(t *testing.T) {
	ts := startServer(t)
	r := request(t, "POST", ts.url+"/token", "Authorization", basic("alice", "secret"))
	if r.status != 401 || r.body != `{"code":401,"message":"unauthorized"}`+"\n" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("POST /token with auth off: %d %q %v", r.status, r.body, r.header)
	}
	if r := request(t, "GET", ts.url+"/id"); r.status != 200 {
		t.Fatalf("GET /id with auth off: %d", r.status)
	}
}

// jwtPart is one base64url segment of a hand-made token.
func jwtPart(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }

func hs256(signing, key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(signing))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// handToken builds header.claims.HMAC-SHA256(key) whatever the header says.
func handToken(header, claims, key string) string {
	s := jwtPart(header) + "." + jwtPart(claims)
	return s + "." + hs256(s, key)
}

func signed(t *testing.T, m jwt.SigningMethod, c jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenForgedRejected: every forgery gets the invalid_token 401, while
// the control tokens next to them, which differ only in what makes the
// forgery a forgery, pass.
func TestTokenForgedRejected(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Hour
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }
	const hsHeader = `{"alg":"HS256","typ":"JWT"}`

	accepted := map[string]string{
		"hand-made HS256":   handToken(hsHeader, `{"iss":"alice"}`, "secret"),
		"HS384":             signed(t, jwt.SigningMethodHS384, jwt.RegisteredClaims{Issuer: "alice"}, []byte("secret")),
		"HS512":             signed(t, jwt.SigningMethodHS512, jwt.RegisteredClaims{Issuer: "alice"}, []byte("secret")),
		"exp in the future": signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "alice", ExpiresAt: at(hour)}, []byte("secret")),
		"nbf and iat past":  signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "alice", NotBefore: at(-hour), IssuedAt: at(-hour)}, []byte("secret")),
		"bob's own":         signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "bob"}, []byte("pa:ss")),
	}
	for name, tok := range accepted {
		if r := request(t, "GET", ts.url+"/id", "Authorization", "Bearer "+tok); r.status != 200 {
			t.Errorf("control %s: %d %q", name, r.status, r.body)
		}
	}

	rejected := map[string]string{
		"alg none":               jwtPart(`{"alg":"none","typ":"JWT"}`) + "." + jwtPart(`{"iss":"alice"}`) + ".",
		"alg none with sig":      handToken(`{"alg":"none","typ":"JWT"}`, `{"iss":"alice"}`, "secret"),
		"RS256 header, HMAC sig": handToken(`{"alg":"RS256","typ":"JWT"}`, `{"iss":"alice"}`, "secret"),
		"RS256 signed":           signed(t, jwt.SigningMethodRS256, jwt.RegisteredClaims{Issuer: "alice"}, rsaKey),
		"PS256 signed":           signed(t, jwt.SigningMethodPS256, jwt.RegisteredClaims{Issuer: "alice"}, rsaKey),
		"wrong key":              handToken(hsHeader, `{"iss":"alice"}`, "Secret"),
		"empty key":              handToken(hsHeader, `{"iss":"alice"}`, ""),
		"expired":                signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "alice", ExpiresAt: at(-time.Minute)}, []byte("secret")),
		"nbf in the future":      signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "alice", NotBefore: at(hour)}, []byte("secret")),
		"iat in the future":      signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "alice", IssuedAt: at(hour)}, []byte("secret")),
		"iss bob, alice's key":   handToken(hsHeader, `{"iss":"bob"}`, "secret"),
		"iss unknown":            handToken(hsHeader, `{"iss":"mallory"}`, "secret"),
		"iss empty":              handToken(hsHeader, `{"iss":""}`, "secret"),
		"no iss":                 handToken(hsHeader, `{}`, "secret"),
		"iss not a string":       handToken(hsHeader, `{"iss":1}`, "secret"),
		"claims tampered":        jwtPart(hsHeader) + "." + jwtPart(`{"iss":"bob"}`) + "." + strings.Split(specToken, ".")[2],
		"garbage":                "garbage",
		"three dots":             "a.b.c",
		"trailing segment":       specToken + ".x",
	}
	for name, tok := range rejected {
		t.Run(name, func(t *testing.T) {
			check401(t, request(t, "GET", ts.url+"/id", "Authorization", "Bearer "+tok), "unauthorized: invalid token", wantBadToken)
			// /token must not launder a forgery into a valid token.
			check401(t, request(t, "POST", ts.url+"/token", "Authorization", "Bearer "+tok), "unauthorized: invalid token", wantBadToken)
		})
	}
}

// TestTokenPasswordChange: a token stops working once its user's password
// changes, here on a server over the same data started with the new one.
func TestTokenPasswordChange(t *testing.T) {
	old := startServer(t, withAuth(map[string]string{"alice": "secret"}))
	oldTok := tokenOf(t, old.url, basic("alice", "secret"))
	changed := startSibling(t, old, nil, withAuth(map[string]string{"alice": "n3w"}))
	check401(t, request(t, "GET", changed.url+"/id", "Authorization", "Bearer "+oldTok), "unauthorized: invalid token", wantBadToken)
	check401(t, request(t, "GET", changed.url+"/id", "Authorization", basic("alice", "secret")), "unauthorized: access denied", wantBasicChallenge)
	newTok := tokenOf(t, changed.url, basic("alice", "n3w"))
	if newTok == oldTok {
		t.Fatal("same token after the password changed")
	}
	if r := request(t, "GET", changed.url+"/id", "Authorization", "Bearer "+newTok); r.status != 200 {
		t.Fatalf("new token: %d %q", r.status, r.body)
	}
	// The old server still has the old password: the new token is not its.
	check401(t, request(t, "GET", old.url+"/id", "Authorization", "Bearer "+newTok), "unauthorized: invalid token", wantBadToken)
}

// TestAuthConfigRejected: credentials no client could present are refused
// at New rather than silently locking a user out.
func TestAuthConfigRejected(t *testing.T) {
	ts := startServer(t)
	// startServer's cleanup waits for Serve to return, which it never does
	// if Shutdown came first: make sure it is serving.
	if r := request(t, "GET", ts.url+"/health"); r.status != 204 {
		t.Fatalf("/health: %d", r.status)
	}
	for _, creds := range []map[string]string{
		{"alice": ""},
		{"": "secret"},
		{"al:ice": "secret"},
		{"alice": "secret", "bob": ""},
	} {
		cfg := ts.srv.cfg
		cfg.BasicAuth = creds
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %q", creds)
		}
	}
	cfg := ts.srv.cfg
	cfg.BasicAuth = map[string]string{"alice": "secret"}
	if _, err := New(cfg); err != nil {
		t.Errorf("New refused valid credentials: %v", err)
	}
}
