package kuborpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxLineSize bounds one NDJSON line of an answer (a block/put
	// acknowledgement is ~90 bytes, an id answer ~2 KiB), so that a broken
	// daemon cannot make us buffer without limit.
	MaxLineSize = 1 << 20

	// MaxErrorBody bounds how much of a non-200 answer is read for its
	// message.
	MaxErrorBody = 64 << 10
)

// StreamErrorTrailer is the HTTP trailer in which kubo reports errors it
// hits after its answer began (go-ipfs-cmds, spec §7). It is known only
// once the body has been read to its end.
const StreamErrorTrailer = "X-Stream-Error"

// Client talks to one kubo daemon's RPC API (POST <url>/api/v0/<cmd>?args).
// It is safe for concurrent use.
type Client struct {
	base string // without a trailing slash
	hc   *http.Client
}

// New validates baseURL (http or https, a host, no query or fragment; a
// trailing slash is trimmed) and returns a client that sends its requests
// with hc. hc nil means a client of its own from NewHTTPClient; pass one
// client to many Clients to share connections. No request is made.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse kubo RPC URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("cannot use kubo RPC URL %q: want http(s)://host:port[/path]", baseURL)
	}
	if hc == nil {
		hc = NewHTTPClient()
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}, nil
}

// NewHTTPClient returns the client New uses when given none. It has no
// Timeout: block/put streams last as long as an add, and callers bound
// calls with their context. Its transport reuses connections
// (MaxIdleConnsPerHost), never limits their number (MaxConnsPerHost 0: one
// per block/put stream), does not use proxies (kubo's RPC API is local or
// on a private network) and does not ask for compression (blocks are
// usually incompressible). 64 KiB buffers save system calls when streaming
// 256 KiB blocks.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}}
}

// URL returns the daemon's base URL, without a trailing slash.
func (c *Client) URL() string { return c.base }

// Post sends POST <url>/api/v0/<cmd>?<args> with body (nil for none; it is
// closed in every case) and returns the 200 answer, whose body the caller
// must close. A non-200 answer is returned as *HTTPError. Other errors are
// the transport's (a *url.Error, which names the URL) or, for a request
// that cannot be built, a permanent error; they are not wrapped, so that
// callers add their own context.
func (c *Client) Post(ctx context.Context, cmd string, args url.Values, body io.ReadCloser, contentType string) (*http.Response, error) {
	u := c.base + "/api/v0/" + cmd
	if len(args) > 0 {
		u += "?" + args.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return nil, Permanent(fmt.Errorf("cannot build %s request: %w", cmd, err))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, newHTTPError(cmd, resp)
	}
	return resp, nil
}

// CallJSON posts cmd and decodes its single-object answer into out, which
// may be nil (the answer is then only checked). An empty answer leaves out
// unchanged. An error that kubo reports in the X-Stream-Error trailer, or
// a second object, fails the call. Errors name cmd and the daemon's URL.
func (c *Client) CallJSON(ctx context.Context, cmd string, args url.Values, out any) error {
	if err := c.call(ctx, cmd, args, out); err != nil {
		return fmt.Errorf("cannot call %s on %s: %w", cmd, c.base, err)
	}
	return nil
}

// call is CallJSON without the wrapping, for the typed calls that wrap
// with their arguments.
func (c *Client) call(ctx context.Context, cmd string, args url.Values, out any) error {
	resp, err := c.Post(ctx, cmd, args, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := NewLineReader(resp.Body)
	line, err := r.Next()
	switch {
	case err == io.EOF:
		return streamError(resp) // some commands answer nothing
	case err != nil:
		return err
	}
	if out != nil {
		if err := json.Unmarshal(line, out); err != nil {
			return Permanent(fmt.Errorf("cannot decode %s answer %.200q: %w", cmd, line, err))
		}
	}
	// Read to the end: only then is the trailer known.
	switch _, err := r.Next(); {
	case err == io.EOF:
		return streamError(resp)
	case err != nil:
		return err
	}
	return Permanent(fmt.Errorf("cannot read %s answer: more than one object", cmd))
}

// streamError returns the error kubo put in the X-Stream-Error trailer of
// resp, whose body must have been read to its end, or nil.
func streamError(resp *http.Response) error {
	if e := resp.Trailer.Get(StreamErrorTrailer); e != "" {
		return &StreamError{Message: e}
	}
	return nil
}

// StreamError is an error kubo reported in the X-Stream-Error trailer,
// after its answer had begun. It is transient: kubo gives no status for it.
type StreamError struct {
	Message string
}

func (e *StreamError) Error() string { return "kubo reported: " + e.Message }

// HTTPError is a non-200 answer from kubo.
type HTTPError struct {
	Cmd        string        // the command, e.g. "pin/add"
	Status     int           // the HTTP status code
	Message    string        // kubo's {"Message"}, or the body's first 64 KiB if it has none
	RetryAfter time.Duration // from the Retry-After header; 0 if absent
}

func newHTTPError(cmd string, resp *http.Response) *HTTPError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	msg := strings.TrimSpace(string(body))
	var kuboErr struct{ Message string }
	if json.Unmarshal(body, &kuboErr) == nil && kuboErr.Message != "" {
		msg = kuboErr.Message
	}
	return &HTTPError{Cmd: cmd, Status: resp.StatusCode, Message: msg, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s answered HTTP %d %s: %s", e.Cmd, e.Status, http.StatusText(e.Status), e.Message)
}

// permanent reports client errors, which a retry would repeat. 408 and
// 429 say "later", not "never".
func (e *HTTPError) permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// parseRetryAfter parses a Retry-After value: seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// kuboMessage returns the message kubo gave for err: an HTTPError's
// Message or a StreamError's, and false for any other error.
func kuboMessage(err error) (string, bool) {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Message, true
	}
	var se *StreamError
	if errors.As(err, &se) {
		return se.Message, true
	}
	return "", false
}
