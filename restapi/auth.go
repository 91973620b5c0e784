package restapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
)

// The realm and messages of IPFS Cluster's 401s (spec §3.1). Clients show
// the message; some match on the WWW-Authenticate challenge.
const (
	authRealm          = "Restricted IPFS Cluster API"
	challengeBasic     = `Basic realm="` + authRealm + `"`
	challengeBearer    = `Bearer realm="` + authRealm + `"`
	challengeBadToken  = `Bearer realm="` + authRealm + `", error="invalid_token"`
	msgAccessDenied    = "unauthorized: access denied"
	msgInvalidToken    = "unauthorized: invalid token"
	msgNoAuthProvided  = "unauthorized: no auth provided"
	msgTokenNoAuth     = "unauthorized"
	headerAuthenticate = "WWW-Authenticate"
)

// hmacAlgs are the token algorithms accepted, as IPFS Cluster accepts any
// HMAC (spec §3.2). Pinning the list before the key is looked up is what
// rejects alg "none" and RS/ES tokens, whatever key they were made with.
var hmacAlgs = []string{
	jwt.SigningMethodHS256.Alg(),
	jwt.SigningMethodHS384.Alg(),
	jwt.SigningMethodHS512.Alg(),
}

var (
	errNoIssuer      = errors.New("restapi: token issuer is not a configured user")
	errNotHMAC       = errors.New("restapi: token is not signed with HMAC")
	errBadCredential = errors.New("restapi: basic auth user and password must not be empty, and the user must not contain ':'")
)

// authUser is one configured user. hash is the SHA-256 of the password, so
// that comparisons run over equal lengths whatever was sent; key is the
// password itself, the HMAC key of the user's tokens.
type authUser struct {
	hash [sha256.Size]byte
	key  []byte
}

// authenticator checks the credentials of every request (spec §3.1–3.2).
// It is built once from Config.BasicAuth and never changes, so it is read
// by every connection goroutine without a lock. A password change takes a
// restart, which is also what makes the old password's tokens fail: their
// HMAC key is the password.
type authenticator struct {
	users  map[string]authUser
	parser *jwt.Parser // safe for concurrent use: NewParser builds its validator up front
}

// checkCredentials rejects credentials no client could ever present: an
// empty user or password (IPFS Cluster always rejects those, spec §3.1), and
// a user with ':' (Basic credentials cut at the first ':').
func checkCredentials(creds map[string]string) error {
	for u, p := range creds {
		if u == "" || p == "" || strings.Contains(u, ":") {
			return fmt.Errorf("cannot use credentials of user %q: %w", u, errBadCredential)
		}
	}
	return nil
}

// newAuthenticator returns nil when no credentials are configured: then,
// as in IPFS Cluster, nothing is checked.
func newAuthenticator(creds map[string]string) *authenticator {
	if len(creds) == 0 {
		return nil
	}
	a := &authenticator{
		users: make(map[string]authUser, len(creds)),
		// v5 checks exp and nbf when present; iat only when asked. IPFS
		// Cluster (golang-jwt v4) rejects a future iat too. No leeway, as
		// there.
		parser: jwt.NewParser(jwt.WithValidMethods(hmacAlgs), jwt.WithIssuedAt()),
	}
	for u, p := range creds {
		if checkCredentials(map[string]string{u: p}) != nil {
			continue // New refuses these; never let one log in regardless
		}
		a.users[u] = authUser{hash: sha256.Sum256([]byte(p)), key: []byte(p)}
	}
	return a
}

// authenticate wraps next with auth and CORS, in IPFS Cluster's order
// (spec §1.2 steps 2–3): auth first, so that a 401 carries no CORS headers
// and even a 404 needs credentials; then CORS, which answers preflights
// itself; then POST /token, which needs the caller's credentials; then next.
func (s *Server) authenticate(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	auth := newAuthenticator(s.cfg.BasicAuth)
	cors := defaultCORS()
	inner := func(ctx *fasthttp.RequestCtx) {
		if cors.handle(ctx) {
			return
		}
		if string(ctx.Path()) == "/token" {
			auth.serveToken(ctx)
			return
		}
		next(ctx)
	}
	if auth == nil {
		return inner
	}
	return func(ctx *fasthttp.RequestCtx) {
		// Preflights carry no credentials (browsers never send them), and
		// load balancers probe /health without any: both pass. Only the
		// exact GET /health does; HEAD and /health/ need auth, as in IPFS
		// Cluster.
		if ctx.IsOptions() || (ctx.IsGet() && string(ctx.Path()) == "/health") {
			inner(ctx)
			return
		}
		if auth.check(ctx) {
			inner(ctx)
		}
	}
}

// check lets the request through, or answers the 401 of spec §3.1 and
// returns false. The order is IPFS Cluster's: a well-formed Basic header
// first, then Bearer; anything else (no header, a Basic header that does not
// decode) counts as no credentials.
func (a *authenticator) check(ctx *fasthttp.RequestCtx) bool {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if user, pass, ok := parseBasic(h); ok {
		if a.checkBasic(user, pass) {
			return true
		}
		ctx.Response.Header.Set(headerAuthenticate, challengeBasic)
		writeJSON(ctx, fasthttp.StatusUnauthorized, errorBody{Code: fasthttp.StatusUnauthorized, Message: msgAccessDenied})
		return false
	}
	if tok, ok := parseBearer(h); ok {
		if _, err := a.verifyToken(tok); err == nil {
			return true
		}
		ctx.Response.Header.Set(headerAuthenticate, challengeBadToken)
		writeJSON(ctx, fasthttp.StatusUnauthorized, errorBody{Code: fasthttp.StatusUnauthorized, Message: msgInvalidToken})
		return false
	}
	ctx.Response.Header.Add(headerAuthenticate, challengeBearer)
	ctx.Response.Header.Add(headerAuthenticate, challengeBasic)
	writeJSON(ctx, fasthttp.StatusUnauthorized, errorBody{Code: fasthttp.StatusUnauthorized, Message: msgNoAuthProvided})
	return false
}

// unknownUser is compared against when the user does not exist, so that an
// unknown user costs the same hashing and comparison as a wrong password.
var unknownUser = authUser{hash: sha256.Sum256([]byte("ingestd: no such user"))}

// checkBasic compares the password in constant time over its SHA-256, so
// neither its content nor its length shows in the response time. Whether
// the user exists may still show through the map lookup; user names are
// not secrets in IPFS Cluster either (they are the tokens' "iss").
func (a *authenticator) checkBasic(user, pass string) bool {
	if user == "" || pass == "" {
		return false
	}
	u, known := a.users[user]
	if !known {
		u = unknownUser
	}
	got := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(got[:], u.hash[:]) == 1 && known
}

// verifyToken returns the user a valid token was issued to. The signature
// must check against the password of the user named in "iss", with an HMAC
// algorithm; exp, nbf and iat are checked when present.
func (a *authenticator) verifyToken(tok string) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := a.parser.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods has already refused other algorithms; this
		// keeps a non-HMAC key type from ever reaching Verify.
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, errNotHMAC
		}
		u, ok := a.users[claims.Issuer]
		if !ok {
			return nil, errNoIssuer
		}
		return u.key, nil
	})
	if err != nil {
		return "", fmt.Errorf("cannot verify token: %w", err)
	}
	return claims.Issuer, nil
}

// issueToken is IPFS Cluster's token (spec §3.2): HS256 over {"iss":user}
// with the user's password, no expiry. It is deterministic, so the same
// user and password always get the same token.
func issueToken(user string, key []byte) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: user})
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("cannot sign token for %q: %w", user, err)
	}
	return s, nil
}

// serveToken is POST /token. The request has passed auth already; the user
// is the Basic user, or the issuer of the Bearer token, which therefore
// gets the same token back. With auth off (a nil receiver) it is a 401
// with "unauthorized", as IPFS Cluster answers.
func (a *authenticator) serveToken(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed) // gorilla/mux: empty body
		return
	}
	unauthorized := func() {
		writeJSON(ctx, fasthttp.StatusUnauthorized, errorBody{Code: fasthttp.StatusUnauthorized, Message: msgTokenNoAuth})
	}
	if a == nil {
		unauthorized()
		return
	}
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	var user string
	if u, _, ok := parseBasic(h); ok {
		user = u
	} else if tok, ok := parseBearer(h); ok {
		iss, err := a.verifyToken(tok)
		if err != nil {
			unauthorized()
			return
		}
		user = iss
	}
	u, ok := a.users[user]
	if !ok {
		unauthorized() // unreachable after check, as in IPFS Cluster
		return
	}
	tok, err := issueToken(user, u.key)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, struct {
		Token string `json:"token"`
	}{tok})
}

// parseBasic is net/http's Request.BasicAuth, which IPFS Cluster uses: the
// scheme case-insensitively, standard base64, cut at the first ':'.
func parseBasic(h []byte) (user, pass string, ok bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return "", "", false
	}
	c, err := base64.StdEncoding.DecodeString(string(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(c), ":")
}

// parseBearer takes the token after a case-insensitive "Bearer " (spec
// §3.1: "bearer" works with IPFS Cluster).
func parseBearer(h []byte) (string, bool) {
	const prefix = "Bearer "
	if len(h) < len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return "", false
	}
	return string(h[len(prefix):]), true
}
