package clusterapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/kuborpc"
	"github.com/ingestd/ingestd/pinner"
)

// Limits on what is read from the cluster.
const (
	// maxObject bounds one JSON object of an answer (an ID with many
	// addresses is a few KiB; a Pin with metadata a few more).
	maxObject = 1 << 20
	// maxObjects bounds the objects of a listing this package reads itself
	// (peers, metrics): a cluster of more peers is not plausible.
	maxObjects = 10000
)

// ErrUnavailable: the cluster did not answer (connection refused, reset,
// timeout): ingestd cannot allocate or pin, and says so with a 503.
var ErrUnavailable = errors.New("clusterapi: cluster unavailable")

// Config says how to reach one IPFS Cluster peer's REST API.
type Config struct {
	// URL is the REST API, e.g. http://127.0.0.1:9094. Required.
	URL string
	// Username and Password are Basic credentials (IPFS Cluster's
	// basic_auth_credentials); empty: none.
	Username, Password string
	// Token is a JWT from the cluster's POST /token, sent as Bearer when
	// no Username is set.
	Token string
	// Client sends the requests. nil: one without a Timeout (forwarded
	// streams last as long as they last; calls are bounded by their
	// contexts) whose transport reuses connections.
	Client *http.Client
}

// Client talks to an IPFS Cluster's REST API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	cfg  Config
	hc   *http.Client
}

// New validates cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("cannot use cluster URL %q: want http(s)://host:port", cfg.URL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	hc := cfg.Client
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &Client{base: u, cfg: cfg, hc: hc}, nil
}

// URL is the cluster's REST API address.
func (c *Client) URL() string { return c.base.String() }

// Do sends method path?query with body to the cluster with the cluster's
// credentials and returns the response as it is, whatever its status: the
// caller forwards it or reads it. A transport failure wraps ErrUnavailable.
func (c *Client) Do(ctx context.Context, method, path, rawQuery string, body io.Reader, header http.Header) (*http.Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = rawQuery
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("cannot build request %s %s: %w", method, path, err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Del("Authorization")
	switch {
	case c.cfg.Username != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	case c.cfg.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cannot reach cluster at %s: %w", c.base, ctx.Err())
		}
		return nil, fmt.Errorf("cannot reach cluster at %s: %w: %w", c.base, ErrUnavailable, err)
	}
	return resp, nil
}

// Error is an error object from the cluster (status and message).
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("cluster answered %d: %s", e.Code, e.Message) }

// call sends a request and decodes a 200 answer's objects with fn, one at
// a time (a single object or an NDJSON stream), then checks the stream's
// X-Stream-Error trailer. A 204 is no objects; any other status is *Error.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, fn func(json.RawMessage) error) error {
	resp, err := c.Do(ctx, method, path, q.Encode(), nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode != http.StatusOK:
		e := &Error{Code: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxObject))
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		e.Code = resp.StatusCode
		return fmt.Errorf("cannot %s %s: %w", method, path, e)
	}
	lr := kuborpc.NewLineReader(resp.Body)
	for n := 0; ; n++ {
		line, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("cannot read %s %s: %w", method, path, err)
		}
		if n >= maxObjects {
			return fmt.Errorf("cannot read %s %s: more than %d objects", method, path, maxObjects)
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("cannot decode %s %s: %w", method, path, err)
		}
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return fmt.Errorf("cannot %s %s: the cluster reported: %s", method, path, e)
	}
	return nil
}

// IPFSID is the "ipfs" member of an ID.
type IPFSID struct {
	ID        string   `json:"id"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error"`
}

// ID is the part of IPFS Cluster's ID object ingestd uses.
type ID struct {
	ID       string `json:"id"`
	Peername string `json:"peername"`
	IPFS     IPFSID `json:"ipfs"`
	Error    string `json:"error"`
}

// ID returns the contacted peer's ID.
func (c *Client) ID(ctx context.Context) (ID, error) {
	var id ID
	err := c.call(ctx, http.MethodGet, "/id", nil, func(b json.RawMessage) error { return json.Unmarshal(b, &id) })
	if err == nil && id.ID == "" {
		err = fmt.Errorf("cannot read the cluster's /id: no id")
	}
	return id, err
}

// Peers returns every cluster peer (GET /peers).
func (c *Client) Peers(ctx context.Context) ([]ID, error) {
	var out []ID
	err := c.call(ctx, http.MethodGet, "/peers", nil, func(b json.RawMessage) error {
		var id ID
		if err := json.Unmarshal(b, &id); err != nil {
			return err
		}
		out = append(out, id)
		return nil
	})
	return out, err
}

// Metric is the part of IPFS Cluster's Metric ingestd uses.
type Metric struct {
	Name   string `json:"name"`
	Peer   string `json:"peer"`
	Value  string `json:"value"`
	Expire int64  `json:"expire"` // UnixNano
	Valid  bool   `json:"valid"`
	Weight int64  `json:"weight"`
}

// Expired reports whether m is no longer valid at now.
func (m Metric) Expired(now time.Time) bool { return !m.Valid || m.Expire <= now.UnixNano() }

// Metrics returns the latest metric of that name of every peer
// (GET /monitor/metrics/{name}).
func (c *Client) Metrics(ctx context.Context, name string) ([]Metric, error) {
	var out []Metric
	err := c.call(ctx, http.MethodGet, "/monitor/metrics/"+url.PathEscape(name), nil, func(b json.RawMessage) error {
		return json.Unmarshal(b, &out)
	})
	return out, err
}

// Pin commits a pin of k with the pin options in q (POST /pins/ipfs/{cid},
// the route that honours mode=direct) and
// returns the pin the cluster committed.
func (c *Client) Pin(ctx context.Context, k cid.Cid, q url.Values) (pinner.Pin, error) {
	var p pinner.Pin
	err := c.call(ctx, http.MethodPost, "/pins/ipfs/"+k.String(), q, func(b json.RawMessage) error { return json.Unmarshal(b, &p) })
	return p, err
}
