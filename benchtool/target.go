package benchtool

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TargetKind is the API a Target speaks.
type TargetKind int

// Target kinds.
const (
	// Cluster is an IPFS Cluster REST API: ingestd or a real cluster.
	Cluster TargetKind = iota
	// Kubo is a kubo RPC API.
	Kubo
)

func (k TargetKind) String() string {
	if k == Kubo {
		return "kubo"
	}
	return "cluster"
}

// Target is an add endpoint.
type Target struct {
	Name string // how the report names it; unique within a run
	Kind TargetKind
	// URL is the API's base URL: "http://127.0.0.1:9094" (cluster),
	// "http://127.0.0.1:5001" (kubo). Credentials in it
	// ("http://user:password@host:9094") are Basic auth.
	URL string
	// BasicAuth is "user:password" for Basic auth; it overrides the URL's.
	BasicAuth string
	// Token is a JWT (from IPFS Cluster's POST /token) sent as a Bearer
	// token; it wins over Basic auth.
	Token string
}

// ParseTarget parses "[NAME=]KIND:URL", KIND being cluster or kubo. Without
// a name, the kind is the name.
func ParseTarget(s string) (Target, error) {
	var t Target
	rest := s
	if eq, colon := strings.IndexByte(s, '='), strings.IndexByte(s, ':'); eq >= 0 && (colon < 0 || eq < colon) {
		t.Name, rest = s[:eq], s[eq+1:]
		if t.Name == "" {
			return t, fmt.Errorf("cannot parse target %q: empty name", s)
		}
	}
	kind, u, ok := strings.Cut(rest, ":")
	if !ok {
		return t, fmt.Errorf("cannot parse target %q: want [NAME=]KIND:URL, KIND cluster or kubo", s)
	}
	switch kind {
	case "cluster":
		t.Kind = Cluster
	case "kubo":
		t.Kind = Kubo
	default:
		return t, fmt.Errorf("cannot parse target %q: kind %q is not cluster or kubo", s, kind)
	}
	if t.Name == "" {
		t.Name = kind
	}
	t.URL = u
	if _, err := t.base(); err != nil {
		return t, fmt.Errorf("cannot parse target %q: %w", s, err)
	}
	return t, nil
}

// base is the URL without credentials, query and trailing slash.
func (t *Target) base() (*url.URL, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q is not http(s)://HOST[:PORT]", u.Redacted())
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// authorization is the Authorization header value, "" for none.
func (t *Target) authorization() string {
	if t.Token != "" {
		return "Bearer " + t.Token
	}
	cred := t.BasicAuth
	if cred == "" {
		if u, err := url.Parse(t.URL); err == nil && u.User != nil {
			cred = u.User.String()
			if uu, err := url.PathUnescape(cred); err == nil {
				cred = uu
			}
		}
	}
	if cred == "" {
		return ""
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
}

// Limits on what a response can make the client hold.
const (
	// DefaultMaxLineSize bounds one NDJSON line of a response; AddedOutput
	// objects are a few hundred bytes.
	DefaultMaxLineSize = 1 << 20
	// DefaultMaxErrorBody bounds how much of a non-200 response is read for
	// its message.
	DefaultMaxErrorBody = 64 << 10
	// DefaultDialTimeout bounds connecting to a target.
	DefaultDialTimeout = 10 * time.Second
)

// Errors an add can fail with, besides transport errors.
var (
	// ErrStream is wrapped by errors reported inside a 200 response: an
	// error object in the stream or the X-Stream-Error trailer.
	ErrStream = errors.New("benchtool: add failed in the response stream")
	// ErrNoRoot is returned for a response that ends without any CID.
	ErrNoRoot = errors.New("benchtool: no root CID in the response")
)

// HTTPError is a response with a status other than 200.
type HTTPError struct {
	Code    int
	Message string // the error object's message, or the start of the body
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func newHTTPClient(insecure bool, conns int) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   DefaultDialTimeout,
		MaxIdleConnsPerHost:   max(conns, 2),
		DisableCompression:    true,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        64 << 10,
		ExpectContinueTimeout: time.Second,
	}
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	// No client timeout: each add has its context's (Config.Timeout).
	return &http.Client{Transport: tr}
}

// endpoint is the URL an upload goes to, with its query.
func (t *Target) endpoint(opts url.Values, car bool) (string, error) {
	u, err := t.base()
	if err != nil {
		return "", err
	}
	q := url.Values{}
	switch {
	case t.Kind == Kubo && car:
		// The add options made the CAR; dag/import takes none of them.
		u.Path += "/api/v0/dag/import"
	case t.Kind == Kubo:
		u.Path += "/api/v0/add"
		q = cloneValues(opts)
	default:
		u.Path += "/add"
		q = cloneValues(opts)
		if car {
			q.Set("format", "car")
		}
	}
	// NDJSON, one object per line: what the parsers below read.
	q.Set("stream-channels", "true")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// post uploads body and returns the root CID the target reports: the last
// CID of the response (IPFS Cluster and kubo both end an add with its
// root; dag/import reports its root). Any error of the target is an error
// here: the add did not happen.
func post(ctx context.Context, hc *http.Client, t *Target, endpoint, contentType string, body io.Reader) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, body)
	if err != nil {
		return "", fmt.Errorf("cannot build request to %s: %w", t.Name, err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "ingestd-bench")
	if a := t.authorization(); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot post to %s: %w", t.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", readHTTPError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), DefaultMaxLineSize)
	var root string
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		c, err := parseLine(line)
		if err != nil {
			return "", err
		}
		if c != "" {
			root = c
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("cannot read the response of %s: %w", t.Name, err)
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return "", fmt.Errorf("%w: X-Stream-Error: %s", ErrStream, e)
	}
	if root == "" {
		return "", ErrNoRoot
	}
	return root, nil
}

// responseLine has the fields of every object the targets send:
// AddedOutput (cid), kubo's add events (Hash), dag/import's Root, and both
// error objects (message/code, Message/Type).
type responseLine struct {
	Cid     *string `json:"cid"`
	Hash    string  `json:"Hash"`
	Message string  `json:"message"`
	Type    string  `json:"Type"`
	Root    *struct {
		Cid struct {
			Link string `json:"/"`
		} `json:"Cid"`
		PinErrorMsg string `json:"PinErrorMsg"`
	} `json:"Root"`
}

// parseLine returns the CID of one response object ("" for progress
// objects), or the error it reports. encoding/json matches keys without
// regard to case, so "message" also catches kubo's "Message".
func parseLine(line []byte) (string, error) {
	var l responseLine
	if err := json.Unmarshal(line, &l); err != nil {
		return "", fmt.Errorf("cannot decode response line %.200q: %w", line, err)
	}
	switch {
	case l.Type == "error" || (l.Message != "" && (l.Cid == nil || *l.Cid == "") && l.Hash == ""):
		return "", fmt.Errorf("%w: %s", ErrStream, l.Message)
	case l.Root != nil:
		if l.Root.PinErrorMsg != "" {
			return "", fmt.Errorf("%w: pin of %s: %s", ErrStream, l.Root.Cid.Link, l.Root.PinErrorMsg)
		}
		return l.Root.Cid.Link, nil
	case l.Cid != nil:
		return *l.Cid, nil
	}
	return l.Hash, nil
}

func readHTTPError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, DefaultMaxErrorBody))
	e := &HTTPError{Code: resp.StatusCode, Message: strings.TrimSpace(string(raw))}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Message != "" {
		e.Message = obj.Message
	}
	if len(e.Message) > 500 {
		e.Message = e.Message[:500] + "…"
	}
	return e
}
