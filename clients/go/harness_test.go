package clients

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
	peer "github.com/libp2p/go-libp2p/core/peer"
)

// settleTimeout bounds every wait for a state change in ingestd (startup,
// a pin reaching a status, shutdown). It is a hang guard, not a performance
// bound: all of these are local changes inside one process that a correct
// server makes in milliseconds, and the guard only turns a hang into a
// failure that shows the last state seen. $INGESTD_CLIENTS_SETTLE (a Go
// duration) overrides it on very slow machines.
var settleTimeout = 30 * time.Second

// pollInterval is how often a wait re-checks its condition.
const pollInterval = 20 * time.Millisecond

// repoRoot is the ingestd repository root: two levels above this module.
var repoRoot string

// ingestdBin is the binary built by TestMain, or buildErr says why there is none.
var (
	ingestdBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	if v := os.Getenv("INGESTD_CLIENTS_SETTLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot parse INGESTD_CLIENTS_SETTLE=%q: %v\n", v, err)
			os.Exit(2)
		}
		settleTimeout = d
	}
	tmp, err := os.MkdirTemp("", "ingestd-clients-go-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot create temp dir: %v\n", err)
		os.Exit(2)
	}
	repoRoot, buildErr = findRepoRoot()
	if buildErr == nil {
		ingestdBin, buildErr = buildIngestd(repoRoot, tmp)
	}
	code := m.Run()
	closeKubo()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// findRepoRoot returns ../.. from this package's directory (where `go test`
// runs it), after checking that it is the ingestd module.
func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("cannot get working directory: %w", err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("cannot find ingestd's go.mod two levels above %s: %w", wd, err)
	}
	if !bytes.Contains(b, []byte("module github.com/ingestd/ingestd\n")) {
		return "", fmt.Errorf("%s/go.mod is not the ingestd module", root)
	}
	return root, nil
}

// buildIngestd runs `go build -o dir/ingestd ./cmd/ingestd` in root.
func buildIngestd(root, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "ingestd")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/ingestd")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cannot build ingestd (go build ./cmd/ingestd in %s): %v\n%s", root, err, out)
	}
	return bin, nil
}

// ingestd is one running ingestd process.
type ingestd struct {
	Port     string
	PeerName string
	Data     string

	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been reaped
	waitErr error
}

// startIngestd starts ingestd on a free loopback port with a fresh data
// directory and the peer name "peer-<test name>", waits until GET /health
// answers 204, and registers a cleanup that stops it with SIGTERM.
func startIngestd(t *testing.T, extraArgs ...string) *ingestd {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// A port picked by the kernel can be taken by someone else before
	// ingestd binds it; that shows up as an early exit, and a new port is
	// tried.
	for attempt := 0; ; attempt++ {
		s, err := tryStart(t, extraArgs)
		if err == nil {
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == 2 {
			t.Fatal(err)
		}
	}
}

var errAddrInUse = errors.New("address already in use")

func tryStart(t *testing.T, extraArgs []string) (*ingestd, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()

	dir := t.TempDir()
	s := &ingestd{
		Port:     port,
		PeerName: "peer-" + strings.ReplaceAll(t.Name(), "/", "-"),
		Data:     filepath.Join(dir, "data"),
		logPath:  filepath.Join(dir, "ingestd.log"),
		done:     make(chan struct{}),
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatalf("cannot create log file: %v", err)
	}
	args := append([]string{"--data", s.Data, "--listen", "127.0.0.1:" + port, "--peername", s.PeerName, "--gateway", "off"}, extraArgs...)
	s.cmd = exec.Command(ingestdBin, args...)
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	// Settings from the environment would change what the tests see.
	s.cmd.Env = withoutIngestdEnv(os.Environ())
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("cannot start %s: %v", ingestdBin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()

	if err := s.waitHealthy(); err != nil {
		s.kill()
		log := s.log()
		if strings.Contains(log, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return nil, fmt.Errorf("ingestd %s: %v\n--- ingestd log ---\n%s", strings.Join(args, " "), err, log)
	}
	t.Cleanup(func() { s.stop(t) })
	return s, nil
}

func withoutIngestdEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "INGESTD_") {
			out = append(out, kv)
		}
	}
	return out
}

// waitHealthy polls GET /health until it answers 204 (spec §2: always 204,
// no auth), the process exits, or settleTimeout passes.
func (s *ingestd) waitHealthy() error {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(settleTimeout)
	last := "no answer yet"
	for {
		resp, err := hc.Get("http://127.0.0.1:" + s.Port + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			last = "GET /health answered " + resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-s.done:
			return fmt.Errorf("exited before GET /health answered 204 (%v); last: %s", s.waitErr, last)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET /health did not answer 204 within the %v hang guard; last: %s", settleTimeout, last)
		}
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (s *ingestd) stop(t *testing.T) {
	select {
	case <-s.done:
		t.Errorf("ingestd exited during the test (%v)\n--- ingestd log ---\n%s", s.waitErr, s.log())
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("cannot send SIGTERM to ingestd (pid %d): %v", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.done:
	case <-time.After(2 * settleTimeout): // ingestd gives in-flight adds 30 s
		s.kill()
		t.Errorf("ingestd (pid %d) did not exit after SIGTERM; killed it\n--- ingestd log ---\n%s", s.cmd.Process.Pid, s.log())
		return
	}
	if t.Failed() {
		t.Logf("--- ingestd log ---\n%s", s.log())
	}
}

func (s *ingestd) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

func (s *ingestd) log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return string(b)
}

// clientConfig is the configuration a user of the Go client writes to reach
// this ingestd over plain HTTP.
func (s *ingestd) clientConfig() *client.Config {
	return &client.Config{
		Host:     "127.0.0.1",
		Port:     s.Port,
		LogLevel: "error",
	}
}

// client returns a client.Client (the real v1.1.6 default client).
func (s *ingestd) client(t *testing.T) client.Client {
	t.Helper()
	return newClient(t, s.clientConfig())
}

func newClient(t *testing.T, cfg *client.Config) client.Client {
	t.Helper()
	c, err := client.NewDefaultClient(cfg)
	if err != nil {
		t.Fatalf("cannot create client: %v", err)
	}
	return c
}

// peerID asks ingestd who it is (GET /id).
func peerID(t *testing.T, c client.Client) peer.ID {
	t.Helper()
	id, err := c.ID(t.Context())
	if err != nil {
		t.Fatalf("ID: %v", err)
	}
	return id.ID
}

// collect runs a streaming client call and gathers what it sends. The
// client closes out itself, on success and on error.
func collect[T any](call func(out chan<- T) error) ([]T, error) {
	out := make(chan T, 8)
	var items []T
	done := make(chan struct{})
	go func() {
		for it := range out {
			items = append(items, it)
		}
		close(done)
	}()
	err := call(out)
	<-done
	return items, err
}

// wantAPIError fails unless err is an api.Error with the given code (the
// HTTP status for server errors, 0 for transport errors).
func wantAPIError(t *testing.T, what string, err error, code int) api.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want an error with code %d", what, code)
	}
	var ae api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("%s: got %T %v, want an api.Error with code %d", what, err, err, code)
	}
	if ae.Code != code {
		t.Fatalf("%s: got code %d (%q), want code %d", what, ae.Code, ae.Message, code)
	}
	return ae
}

// eventually polls check until it reports done, fails the test at once if
// check returns an error, and fails with the last state after settleTimeout.
func eventually(t *testing.T, what string, check func() (done bool, state string, err error)) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		done, state, err := check()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within the %v hang guard; last state: %s", what, settleTimeout, state)
		}
		time.Sleep(pollInterval)
	}
}

// statusOf returns this peer's entry of a GlobalPinInfo.
func statusOf(t *testing.T, gpi api.GlobalPinInfo, self peer.ID) api.PinInfoShort {
	t.Helper()
	pi, ok := gpi.PeerMap[self.String()]
	if !ok {
		t.Fatalf("status of %s has no entry for peer %s: %+v", gpi.Cid, self, gpi.PeerMap)
	}
	return pi
}

// waitSettled polls GET /pins/<cid> until this peer's status is no longer
// queued or in progress, and returns that entry.
func waitSettled(t *testing.T, c client.Client, ci api.Cid, self peer.ID) api.PinInfoShort {
	t.Helper()
	var last api.PinInfoShort
	eventually(t, "status of "+ci.String()+" settles", func() (bool, string, error) {
		gpi, err := c.Status(t.Context(), ci, false)
		if err != nil {
			return false, "", fmt.Errorf("Status: %w", err)
		}
		pi, ok := gpi.PeerMap[self.String()]
		if !ok {
			return false, fmt.Sprintf("no entry for %s in %+v", self, gpi.PeerMap), nil
		}
		last = pi
		switch pi.Status {
		case api.TrackerStatusPinQueued, api.TrackerStatusPinning,
			api.TrackerStatusUnpinQueued, api.TrackerStatusUnpinning:
			return false, pi.Status.String(), nil
		}
		return true, pi.Status.String(), nil
	})
	return last
}

// waitFor is the client's own WaitFor helper (what `ipfs-cluster-ctl
// --wait` uses) with a short poll interval and the hang guard.
func waitFor(t *testing.T, c client.Client, ci api.Cid, target api.TrackerStatus) (api.GlobalPinInfo, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), settleTimeout)
	defer cancel()
	return client.WaitFor(ctx, c, client.StatusFilterParams{
		Cid:       ci,
		Target:    target,
		CheckFreq: 50 * time.Millisecond,
	})
}

func mustCid(t *testing.T, s string) api.Cid {
	t.Helper()
	c, err := api.DecodeCid(s)
	if err != nil {
		t.Fatalf("cannot decode CID %q: %v", s, err)
	}
	return c
}

func itoa(n int) string { return strconv.Itoa(n) }
