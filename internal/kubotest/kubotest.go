package kubotest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the kubo release the tests are pinned to. CIDs depend on kubo's
// import defaults, so a different release is a different oracle; it must
// match KUBO_VERSION in .ci/kubo.sh.
const Version = "0.42.0"

const (
	// EnvBin overrides the kubo binary (see Binary).
	EnvBin = "INGESTD_IPFS_BIN"
	// EnvRequire, when set to a true value, turns a missing kubo binary into
	// a test failure instead of a skip; CI sets it so that kubo-backed tests
	// cannot silently stop running.
	EnvRequire = "INGESTD_REQUIRE_KUBO"
)

const (
	// commandTimeout bounds a single CLI invocation so a wedged kubo fails
	// the test with its stderr instead of hanging until `go test` times out.
	commandTimeout = 5 * time.Minute
	// daemonStartTimeout bounds how long StartDaemon polls for readiness.
	daemonStartTimeout = 60 * time.Second
	// daemonStopGrace is how long a daemon gets to exit after SIGTERM before
	// it is killed.
	daemonStopGrace = 10 * time.Second
	// pollInterval is how often readiness is re-checked while waiting.
	pollInterval = 25 * time.Millisecond
)

// offlineConfig keeps a repository on loopback and away from the public
// network: no peers to dial, no DHT, no LAN discovery, no router port
// mapping, no remote AutoConf/AutoTLS. Port 0 lets parallel tests run
// daemons side by side without port clashes. Values are JSON for
// `ipfs config --json`.
var offlineConfig = []struct{ key, value string }{
	{"Bootstrap", `[]`},
	{"Routing.Type", `"none"`},
	{"Discovery.MDNS.Enabled", `false`},
	{"Swarm.DisableNatPortMap", `true`},
	{"AutoConf.Enabled", `false`},
	{"AutoTLS.Enabled", `false`},
	{"Addresses.API", `"/ip4/127.0.0.1/tcp/0"`},
	{"Addresses.Gateway", `"/ip4/127.0.0.1/tcp/0"`},
	{"Addresses.Swarm", `["/ip4/127.0.0.1/tcp/0"]`},
}

// Binary returns the path of the kubo binary for tests: $INGESTD_IPFS_BIN if
// set, else <repo root>/.cache/bin/ipfs (as built by `bash .ci/kubo.sh`).
// When that binary is missing or is not kubo Version, the test is skipped
// with instructions, or failed if $INGESTD_REQUIRE_KUBO is set (CI).
//
// An $INGESTD_IPFS_BIN of another version is used anyway (it is an explicit
// choice) but logged, because CID expectations may then not hold.
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(EnvBin); bin != "" {
		if err := checkExecutable(bin); err != nil {
			t.Fatalf("cannot use %s: %v", EnvBin, err)
		}
		v, err := binaryVersion(bin)
		if err != nil {
			t.Fatalf("cannot use %s: %v", EnvBin, err)
		}
		if !strings.Contains(v, Version) {
			t.Logf("warning: %s=%s reports %q, tests are pinned to kubo %s", EnvBin, bin, v, Version)
		}
		return bin
	}

	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("cannot locate kubo binary: %v", err)
	}
	bin := filepath.Join(root, ".cache", "bin", "ipfs")
	if err := checkExecutable(bin); err != nil {
		missingBinary(t, "kubo binary not available: %v", err)
	}
	v, err := binaryVersion(bin)
	if err != nil {
		missingBinary(t, "kubo binary not usable: %v", err)
	}
	if !strings.Contains(v, Version) {
		missingBinary(t, "%s reports %q, want kubo %s", bin, v, Version)
	}
	return bin
}

// missingBinary skips (locally) or fails (CI) a test that cannot get kubo.
func missingBinary(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf("; run `bash .ci/kubo.sh` to build kubo %s (or set %s)", Version, EnvBin)
	if requireKubo() {
		t.Fatalf("%s [%s is set]", msg, EnvRequire)
	}
	t.Skip(msg)
}

func requireKubo() bool {
	v := os.Getenv(EnvRequire)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	// Anything set but unparsable (e.g. "yes") is taken as a request to
	// require kubo: failing loudly is safer than skipping silently.
	return err != nil || b
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cannot stat %s: %w", path, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("cannot execute %s: not an executable file", path)
	}
	return nil
}

// versions caches `ipfs version` per binary path so that each test does not
// pay for another process start just to re-check the same binary.
var versions sync.Map // path -> versionResult

type versionResult struct {
	version string
	err     error
}

func binaryVersion(bin string) (string, error) {
	if r, ok := versions.Load(bin); ok {
		return r.(versionResult).version, r.(versionResult).err
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version")
	// No repository is needed for `version`; pointing IPFS_PATH at a path
	// that does not exist keeps the developer's ~/.ipfs out of it.
	cmd.Env = commandEnv(filepath.Join(os.TempDir(), "ingestd-kubotest-no-repo"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	res := versionResult{version: strings.TrimSpace(string(out))}
	if err != nil {
		res.err = fmt.Errorf("cannot run %s version: %w (stderr: %s)", bin, err, bytes.TrimSpace(stderr.Bytes()))
	}
	versions.Store(bin, res)
	return res.version, res.err
}

// RepoRoot returns the ingestd repository root: the nearest directory at or
// above the working directory that holds a go.mod. Tests run in their
// package directory, so this finds the module root.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("cannot get working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// commandEnv is the environment for every kubo process. Variables from the
// developer's shell that could point kubo at another repository or daemon
// (IPFS_PATH, IPFS_API...), or change its logging or networking, are dropped
// so that tests behave the same everywhere.
func commandEnv(ipfsPath string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "IPFS_") || strings.HasPrefix(k, "GOLOG_") || strings.HasPrefix(k, "LIBP2P_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"IPFS_PATH="+ipfsPath,
		"IPFS_TELEMETRY=off",
		"GOLOG_LOG_LEVEL=error",
	)
}

// Repo is an initialised kubo repository (IPFS_PATH) in a t.TempDir().
//
// Without a daemon, each CLI command opens the repository itself and takes
// its lock, so commands on one Repo must not run concurrently unless a
// daemon is running (then the CLI forwards them to it).
type Repo struct {
	Path string // IPFS_PATH
	Bin  string // kubo binary
}

// NewRepo runs `ipfs init --profile=test`, applies the extra profiles (e.g.
// "unixfs-v1-2025") with `ipfs config profile apply`, and then applies the
// offline/loopback configuration. The loopback settings go last so that no
// profile (say "default-networking") can re-enable bootstrap peers or public
// listen addresses.
func NewRepo(t testing.TB, profiles ...string) *Repo {
	t.Helper()
	r := &Repo{
		Path: filepath.Join(t.TempDir(), "ipfs"),
		Bin:  Binary(t),
	}
	r.Run(t, nil, "init", "--profile=test")
	for _, p := range profiles {
		r.Run(t, nil, "config", "profile", "apply", p)
	}
	for _, c := range offlineConfig {
		r.SetConfig(t, c.key, c.value)
	}
	return r
}

// SetConfig runs `ipfs config --json key jsonValue`.
func (r *Repo) SetConfig(t testing.TB, key, jsonValue string) {
	t.Helper()
	r.Run(t, nil, "config", "--json", key, jsonValue)
}

// PeerID returns the repository's Identity.PeerID from its config.
func (r *Repo) PeerID(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(string(r.Run(t, nil, "config", "Identity.PeerID")))
}

// Run runs `ipfs args...` with this repo's env and stdin (nil means no
// input), returns stdout, and fails the test on error with stderr in the
// message.
func (r *Repo) Run(t testing.TB, stdin io.Reader, args ...string) []byte {
	t.Helper()
	out, err := r.RunErr(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunErr is Run but returns the error (with stderr included) instead of
// failing; fault tests use it to assert that kubo rejects something.
func (r *Repo) RunErr(stdin io.Reader, args ...string) ([]byte, error) {
	return r.runIn("", stdin, args...)
}

// runIn runs kubo with the working directory dir ("" = the test's).
func (r *Repo) runIn(dir string, stdin io.Reader, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Bin, args...)
	cmd.Dir = dir
	cmd.Env = commandEnv(r.Path)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("cannot run ipfs %s: %w (stderr: %s)",
			strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// AddEvent is one result of `ipfs add`: a file or directory and its CID.
//
// kubo 0.42.0's CLI ignores --enc=json for `add` and always prints
// "added <cid> <name>" lines, so from the CLI only Name and Hash are set;
// Size and Bytes are filled only when parsing JSON (the HTTP API's
// /api/v0/add output).
type AddEvent struct {
	Name  string
	Hash  string
	Size  string `json:",omitempty"`
	Bytes int64  `json:",omitempty"`
}

// AddOnlyHash runs `ipfs add --only-hash --enc=json --progress=false
// <flags...> -- <paths...>` in dir (paths are relative to it, so the names
// kubo reports are too) and returns the events that carry a CID, in kubo's
// order: for -r the root directory comes last. It needs no daemon; if one is
// running on the repository the CLI forwards to it, with the same result.
func (r *Repo) AddOnlyHash(t testing.TB, dir string, flags []string, paths ...string) []AddEvent {
	t.Helper()
	args := append([]string{"add", "--only-hash", "--enc=json", "--progress=false"}, flags...)
	// "--" so that a path starting with "-" is never taken for a flag.
	args = append(append(args, "--"), paths...)
	out, err := r.runIn(dir, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	events, err := ParseAddOutput(out)
	if err != nil {
		t.Fatalf("cannot parse ipfs add output: %v\noutput:\n%s", err, out)
	}
	return events
}

// ParseAddOutput decodes `ipfs add` output in either form kubo produces:
// JSON lines (HTTP API, or a future CLI honouring --enc=json) or the CLI's
// text lines "added <cid> <name>". Progress events (no CID) are dropped.
func ParseAddOutput(out []byte) ([]AddEvent, error) {
	var events []AddEvent
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "{"):
			var ev AddEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return nil, fmt.Errorf("cannot decode add event %q: %w", line, err)
			}
			if ev.Hash != "" {
				events = append(events, ev)
			}
		case strings.HasPrefix(line, "added "):
			// The name may contain spaces, and is empty for the wrapping
			// directory of -w, so split only once and keep the rest as-is.
			hash, name, _ := strings.Cut(strings.TrimPrefix(line, "added "), " ")
			if hash == "" {
				return nil, fmt.Errorf("cannot parse add line %q: no CID", line)
			}
			events = append(events, AddEvent{Name: unescapeName(name), Hash: hash})
		default:
			return nil, fmt.Errorf("cannot parse add line %q: unexpected format", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read add output: %w", err)
	}
	return events, nil
}

// unescapeName reverses kubo's cmdenv.EscNonPrint, which prints a name that
// contains a backslash or a non-printable rune as strconv.Quote without the
// outer quotes and with \" turned back into ".
func unescapeName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`)
	if err != nil {
		return s
	}
	return u
}

// Daemon is a running `ipfs daemon` (not --offline, so later tests can
// connect daemons over the swarm) bound to 127.0.0.1. With Bootstrap=[] and
// Routing.Type=none it has nobody to talk to beyond loopback.
type Daemon struct {
	Repo    *Repo
	APIAddr string // "127.0.0.1:PORT"
	PeerID  string
	LogPath string // daemon stdout+stderr

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // cmd.Wait's result, valid after done is closed
}

// httpClient talks only to loopback daemons, so it ignores proxy settings
// from the environment.
var httpClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableCompression: true},
	Timeout:   2 * time.Minute,
}

// StartDaemon starts `ipfs daemon --enable-gc=false` on r and polls (up to
// 60s) until $IPFS_PATH/api exists and /api/v0/id answers. It registers a
// cleanup that stops the daemon (SIGTERM, then SIGKILL after 10s) and, if
// the test failed, logs the daemon's output. GC is off so blocks a test put
// do not vanish under it.
//
// StartDaemon may be called again on the same repo after Kill, to test
// restarts.
func StartDaemon(t testing.TB, r *Repo) *Daemon {
	t.Helper()
	// A daemon killed earlier on this repo leaves its api file behind; drop
	// it so that readiness means the new daemon wrote it.
	if err := os.Remove(filepath.Join(r.Path, "api")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("cannot remove stale api file: %v", err)
	}
	logFile, err := os.CreateTemp(r.Path, "daemon-*.log")
	if err != nil {
		t.Fatalf("cannot create daemon log: %v", err)
	}
	cmd := exec.Command(r.Bin, "daemon", "--enable-gc=false")
	cmd.Dir = r.Path
	cmd.Env = commandEnv(r.Path)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	err = cmd.Start()
	// The child has its own descriptor; ours is no longer needed.
	logFile.Close()
	if err != nil {
		t.Fatalf("cannot start ipfs daemon: %v", err)
	}

	d := &Daemon{Repo: r, LogPath: logFile.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	// Registered before waiting for readiness, so a daemon that never gets
	// ready is still stopped.
	t.Cleanup(func() {
		d.stop(daemonStopGrace)
		if t.Failed() {
			d.logOutput(t)
		}
	})

	if err := d.waitReady(daemonStartTimeout); err != nil {
		t.Fatalf("cannot start ipfs daemon: %v", err)
	}
	return d
}

// URL returns the RPC API base URL, "http://" + APIAddr.
func (d *Daemon) URL() string { return "http://" + d.APIAddr }

// Kill stops the daemon immediately (SIGKILL), as a crash would, and waits
// until it has exited so that its repo lock is released.
func (d *Daemon) Kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Kill() // fails only if it already exited
	<-d.done
}

// Signal sends sig to the daemon process, e.g. SIGSTOP to freeze it as a
// hung peer would be. A test that stops it must SIGCONT it in a cleanup
// registered after StartDaemon (cleanups run last-in first-out), so that
// the daemon can shut down cleanly.
func (d *Daemon) Signal(sig os.Signal) error {
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("cannot signal ipfs daemon %d: %w", d.cmd.Process.Pid, err)
	}
	return nil
}

// Pid returns the daemon's process ID, e.g. to read its CPU time.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited reports whether the daemon process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Call POSTs /api/v0/<cmd>?<args> without a body (kubo's RPC API accepts only
// POST) and returns the response body; any error or non-200 status fails the
// test.
func (d *Daemon) Call(t testing.TB, cmd string, args url.Values) []byte {
	t.Helper()
	body, err := d.CallErr(context.Background(), cmd, args)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// CallErr is Call but returns the error (with kubo's message) instead of
// failing.
func (d *Daemon) CallErr(ctx context.Context, cmd string, args url.Values) ([]byte, error) {
	u := d.URL() + "/api/v0/" + cmd
	if len(args) > 0 {
		u += "?" + args.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot build request for %s: %w", cmd, err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot call %s: %w", cmd, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s response: %w", cmd, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("cannot call %s: HTTP %s: %s", cmd, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// waitReady polls until the daemon has written its api file and answers
// /api/v0/id on it, then records APIAddr and PeerID. It gives up early if
// the process exits, so a daemon that fails to start reports at once rather
// than after the timeout.
func (d *Daemon) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var lastErr error
	err := poll(ctx, pollInterval, func() (bool, error) {
		if d.Exited() {
			return false, fmt.Errorf("daemon exited before becoming ready: %v", d.waitErr)
		}
		addr, err := readAPIAddr(d.Repo.Path)
		if err != nil {
			lastErr = err
			return false, nil
		}
		d.APIAddr = addr
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		body, err := d.CallErr(reqCtx, "id", nil)
		if err != nil {
			lastErr = err
			return false, nil
		}
		var id struct{ ID string }
		if err := json.Unmarshal(body, &id); err != nil || id.ID == "" {
			return false, fmt.Errorf("cannot decode /api/v0/id response %q: %v", body, err)
		}
		d.PeerID = id.ID
		return true, nil
	})
	if err != nil && lastErr != nil {
		return fmt.Errorf("%w (last attempt: %v)", err, lastErr)
	}
	return err
}

// readAPIAddr parses $IPFS_PATH/api, a multiaddr such as
// /ip4/127.0.0.1/tcp/PORT that the daemon writes once its API listens.
func readAPIAddr(ipfsPath string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(ipfsPath, "api"))
	if err != nil {
		return "", fmt.Errorf("cannot read api file: %w", err)
	}
	ma := strings.TrimSpace(string(raw))
	parts := strings.Split(ma, "/")
	// "/ip4/127.0.0.1/tcp/PORT" splits into "", "ip4", host, "tcp", port.
	if len(parts) != 5 || parts[0] != "" || (parts[1] != "ip4" && parts[1] != "ip6") || parts[3] != "tcp" {
		return "", fmt.Errorf("cannot parse api multiaddr %q: want /ip4/HOST/tcp/PORT", ma)
	}
	if port, err := strconv.Atoi(parts[4]); err != nil || port <= 0 || port > 65535 {
		return "", fmt.Errorf("cannot parse api multiaddr %q: bad port", ma)
	}
	return net.JoinHostPort(parts[2], parts[4]), nil
}

// stop asks the daemon to shut down cleanly and kills it if it has not
// exited within grace; it returns once the process has been reaped.
func (d *Daemon) stop(grace time.Duration) {
	if d.Exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-d.done:
	case <-timer.C:
		d.Kill()
	}
}

func (d *Daemon) logOutput(t testing.TB) {
	t.Helper()
	out, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Logf("cannot read ipfs daemon log: %v", err)
		return
	}
	t.Logf("ipfs daemon output (%s):\n%s", d.LogPath, out)
}

// poll calls cond every interval until it reports done, returns an error, or
// ctx ends. Waiting on a condition instead of a fixed sleep makes each wait
// as short as this machine allows and no shorter.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cannot wait for condition: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
