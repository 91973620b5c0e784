package restapi

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// limitListener is what Serve accepts on: it bounds the connections that
// clients may hold (in all and per client IP) and survives running out of
// file descriptors.
//
// An accepted connection over a limit is answered with an IPFS Cluster
// error object (503 over the total, 429 over the per-IP limit) and closed,
// so the client learns why instead of seeing a reset. fasthttp's own
// limits answer in plain text, so they are left at their defaults.
//
// Accept errors that say the process or the system is out of a resource
// (EMFILE, ENFILE, ENOBUFS, ENOMEM) or that one connection died before it
// was accepted (ECONNABORTED) are waited out with a backoff from 5 ms to
// 1 s, as net/http does; fasthttp would return them from Serve and the
// daemon would exit, cutting every add in flight.
//
// State: mu guards total and byIP; a connection is counted from Accept to
// its first Close (limitedConn.release runs once).
type limitListener struct {
	net.Listener
	max, perIP int
	logf       func(string, ...any)

	closed    chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	total int
	byIP  map[string]int

	// refusing bounds the connections being answered with a refusal at
	// once; more are closed without an answer.
	refusing chan struct{}
}

const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	// refusalTimeout bounds the write of a refusal (and a TLS handshake
	// before it): the client is over a limit and gets no more.
	refusalTimeout = time.Second
	maxRefusing    = 64
)

func newLimitListener(ln net.Listener, max, perIP int, logf func(string, ...any)) *limitListener {
	return &limitListener{
		Listener: ln, max: max, perIP: perIP, logf: logf,
		closed: make(chan struct{}), byIP: map[string]int{},
		refusing: make(chan struct{}, maxRefusing),
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Accept returns the next connection within the limits.
func (l *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	var lastLog time.Time
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAccept(err) {
				return nil, err
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			if time.Since(lastLog) >= time.Second {
				lastLog = time.Now()
				l.logf("cannot accept connections: %v; retrying in %s (%d connections open)", err, delay, l.open())
			}
			select {
			case <-time.After(delay):
				continue
			case <-l.closed:
				return nil, net.ErrClosed
			}
		}
		delay = 0
		ip := remoteIP(c)
		if refusal := l.admit(ip); refusal != nil {
			l.refuse(c, refusal)
			continue
		}
		release := sync.OnceFunc(func() { l.leave(ip) })
		if tc, ok := c.(*tls.Conn); ok {
			// fasthttp recognises TLS by the connection's methods.
			return &limitedTLSConn{Conn: tc, release: release}, nil
		}
		return &limitedConn{Conn: c, release: release}, nil
	}
}

// temporaryAccept reports whether an accept error is waited out rather
// than fatal.
func temporaryAccept(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// admit counts a new connection, or returns the refusal it gets.
func (l *limitListener) admit(ip string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return refusalTotal
	case l.perIP > 0 && l.byIP[ip] >= l.perIP:
		return refusalPerIP
	}
	l.total++
	l.byIP[ip]++
	return nil
}

func (l *limitListener) leave(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// refuse answers a connection over a limit and closes it, on a goroutine
// (a TLS handshake or a slow client must not stop Accept), at most
// maxRefusing at once.
func (l *limitListener) refuse(c net.Conn, answer []byte) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		_ = c.SetDeadline(time.Now().Add(refusalTimeout))
		_, _ = c.Write(answer)
		_ = c.Close()
	}()
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// refusalResponse is a complete HTTP answer with an IPFS Cluster error
// object (spec §5.1), sent before the request is read.
func refusalResponse(code int, status string, retryAfter int, msg string) []byte {
	body := fmt.Sprintf(`{"code":%d,"message":%q}`, code, msg)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, status, retryAfter, len(body), body)
}

var (
	refusalTotal = refusalResponse(503, "Service Unavailable", 5, "too many open connections, retry later")
	refusalPerIP = refusalResponse(429, "Too Many Requests", 5, "too many open connections from this address, retry later")
)

// limitedConn is a counted connection; its first Close uncounts it.
//
// Close lingers, as Apache's lingering close and net/http's
// closeWriteAndWait do: a socket closed with unread data in it is reset,
// and a reset makes the client's kernel drop what it has received and not
// yet read, such as the end of a failed add's response, while the client is
// still sending its upload. So Close sends the FIN after everything
// written, then reads and discards what still comes, up to lingerTimeout
// and lingerMax, on its own goroutine; the connection stays counted until
// then.
type limitedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

const (
	lingerTimeout = 2 * time.Second
	lingerMax     = 1 << 20
)

func (c *limitedConn) Close() error {
	tc, ok := c.Conn.(*net.TCPConn)
	if !ok {
		c.release()
		return c.Conn.Close()
	}
	c.once.Do(func() {
		if tc.CloseWrite() != nil {
			_ = tc.Close()
			c.release()
			return
		}
		go func() {
			defer c.release()
			_ = tc.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, tc, lingerMax)
			_ = tc.Close()
		}()
	})
	return nil
}

type limitedTLSConn struct {
	*tls.Conn
	release func()
}

func (c *limitedTLSConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// limitDefaults fills in the zero values of the connection and time
// limits (Config documents each).
func (cfg *Config) limitDefaults() {
	if cfg.MinUploadRate == 0 {
		cfg.MinUploadRate = 1024
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.WriteStallTimeout <= 0 {
		cfg.WriteStallTimeout = time.Minute
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 10_000
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur/2 < uint64(cfg.MaxConnections) {
			// The rest is for the stores, the peers and the hash pool.
			cfg.MaxConnections = max(int(rl.Cur/2), 1)
		}
	}
	if cfg.MaxConnectionsPerIP == 0 {
		cfg.MaxConnectionsPerIP = min(1024, cfg.MaxConnections)
	}
}

// requestError answers a request fasthttp could not read (headers too
// large, a timeout, a malformed request) with IPFS Cluster's error object
// instead of fasthttp's plain text.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		writeError(ctx, &StatusError{Code: fasthttp.StatusRequestHeaderFieldsTooLarge, Err: errors.New("request headers too large")})
	case errors.As(err, &ne) && ne.Timeout():
		writeError(ctx, &StatusError{Code: fasthttp.StatusRequestTimeout, Err: errors.New("request not received in time")})
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, &StatusError{Code: fasthttp.StatusRequestEntityTooLarge, Err: errors.New("request body too large")})
	default:
		writeError(ctx, &StatusError{Code: fasthttp.StatusBadRequest, Err: fmt.Errorf("cannot parse request: %w", err)})
	}
}

// addPrefetch is how much of an upload fasthttp reads, under the header
// timeout, before the add starts and uploadReader's stall and rate bounds
// take over.
const addPrefetch = 64 << 10

// requestConfig shrinks what fasthttp reads of an upload before the add
// starts: its default, the API's 1 MiB body limit, would have to arrive
// within the header timeout, which a slow but steady client may miss.
func requestConfig(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.IsPost() && bytes.HasPrefix(h.RequestURI(), []byte("/add")) {
		return fasthttp.RequestConfig{MaxRequestBodySize: addPrefetch}
	}
	return fasthttp.RequestConfig{}
}
