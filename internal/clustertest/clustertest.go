package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ingestd/ingestd/internal/kubotest"
)

const (
	// commandTimeout bounds one CLI run (init, ctl, --version) so that a
	// wedged process fails the test with its stderr instead of hanging.
	commandTimeout = 5 * time.Minute
	// stopGrace is how long a service gets to shut down after SIGTERM
	// before it is killed; IPFS Cluster's shutdown saves the peerstore and
	// closes the datastore, which takes a moment on a busy machine.
	stopGrace = 30 * time.Second
	// pollInterval is how often WaitFor re-checks a condition. Each check is
	// one or a few HTTP calls to a cluster peer, so it is not as tight as
	// kubotest's.
	pollInterval = 100 * time.Millisecond
	// cleanupMargin is the part of the test's deadline (go test -timeout)
	// that WaitFor leaves for cleanups: a test that waits until the
	// deadline panics, and then no cleanup stops the processes or prints
	// their logs.
	cleanupMargin = 30 * time.Second
	// logTail is how much of each service log a failed test prints.
	logTail = 64 << 10
)

// Cluster is a running IPFS Cluster of real ipfs-cluster-service processes
// with CRDT consensus, each peer with its own kubo daemon, all on loopback
// (127.0.0.1, or a 127.0.N.x per peer with DistinctHosts). Start makes one;
// its cleanup stops every process by PID.
//
// Methods that start processes take a testing.TB; the others may be called
// from any goroutine of the test, but not concurrently for the same peer.
type Cluster struct {
	// Peers are the cluster peers, Peers[i].Index == i.
	Peers []*Peer
	// Secret is the cluster secret every peer shares (hex).
	Secret string

	bin  string
	opts options
	t    testing.TB // Start's
}

// Peer is one cluster peer: an ipfs-cluster-service and its kubo daemon.
// Addresses stay the same across Restart and RestartKubo.
type Peer struct {
	Index int
	// Name is the peername in service.json, "peer<Index>".
	Name string
	// ID is the cluster peer ID (identity.json), not kubo's.
	ID string
	// Dir is the service's configuration and state folder (--config).
	Dir string
	// Kubo is the peer's kubo daemon; RestartKubo replaces it.
	Kubo *kubotest.Daemon
	// APIAddr is the REST API, "127.0.0.1:PORT" (with DistinctHosts
	// "127.0.N.<Index+1>:9094"); URL gives the base URL.
	APIAddr string
	// ProxyAddr is the IPFS proxy API and PinSvcAddr the pinning service
	// API, "HOST:PORT" as APIAddr.
	ProxyAddr, PinSvcAddr string
	// SwarmAddr is the cluster's libp2p address,
	// "/ip4/HOST/tcp/PORT/p2p/<ID>".
	SwarmAddr string
	// LogPath is the log (stdout and stderr) of the current or last
	// service process.
	LogPath string

	kuboRepo *kubotest.Repo
	kuboAPI  string // "HOST:PORT", fixed so that a restarted kubo keeps it
	proc     *process
	starts   int
}

// URL returns the REST API base URL, "http://" + APIAddr.
func (p *Peer) URL() string { return "http://" + p.APIAddr }

// Running reports whether the peer's service process is running.
func (p *Peer) Running() bool { return p.proc != nil && !p.proc.exited() }

// Start starts an n-peer IPFS Cluster and waits until it is ready
// (WaitReady): n kubo daemons (kubotest, offline), then n
// ipfs-cluster-service processes, each initialised with `init --consensus
// crdt` in its own folder and configured as described in configure.
//
// It fails the test unless the process is in a loopback-only network
// namespace (CheckLoopbackOnly): see .ci/netns-test.sh. It skips the test
// when a binary is missing, or fails it when $INGESTD_REQUIRE_KUBO or $CI
// is set (see ServiceBinary).
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("cannot start a cluster of %d peers", n)
	}
	if err := CheckLoopbackOnly(); err != nil {
		t.Fatalf("refusing to start ipfs-cluster-service: %v.\n%s", err, runnerHint)
	}
	c := &Cluster{bin: ServiceBinary(t), Secret: newSecret(t), t: t}
	for _, o := range opts {
		o(&c.opts)
	}

	addrs := c.peerAddrs(t, n)
	for i, a := range addrs {
		p := &Peer{
			Index:      i,
			Name:       "peer" + strconv.Itoa(i),
			Dir:        filepath.Join(t.TempDir(), "cluster"),
			kuboAPI:    a.kuboAPI,
			APIAddr:    a.rest,
			ProxyAddr:  a.proxy,
			PinSvcAddr: a.pinsvc,
		}
		p.kuboRepo = kubotest.NewRepo(t)
		p.kuboRepo.SetConfig(t, "Addresses.API", strconv.Quote(multiaddr(p.kuboAPI)))
		if a.kuboSwarm != "" {
			p.kuboRepo.SetConfig(t, "Addresses.Swarm", `["`+a.kuboSwarm+`"]`)
			p.kuboRepo.SetConfig(t, "Addresses.Gateway", strconv.Quote(a.kuboGateway))
		}
		p.Kubo = kubotest.StartDaemon(t, p.kuboRepo)
		c.Peers = append(c.Peers, p)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, p := range c.Peers {
		wg.Go(func() { errs[i] = c.initPeer(p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, p := range c.Peers {
		p.SwarmAddr = multiaddr(addrs[i].swarm) + "/p2p/" + p.ID
	}
	for _, p := range c.Peers {
		if err := c.writeConfig(p); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after the kubo daemons' cleanups, so it runs before them:
	// services stop while their kubo still answers.
	t.Cleanup(func() { c.cleanup(t) })

	for _, p := range c.Peers {
		c.startService(t, p)
	}
	for _, p := range c.Peers {
		c.waitAPI(t, p)
	}
	c.WaitReady(t)
	return c
}

// peerAddrs are the addresses of one peer: "host:port", and multiaddrs for
// kubo's swarm and gateway ("" keeps kubotest's 127.0.0.1, port 0).
type peerAddrs struct {
	kuboAPI, rest, proxy, pinsvc, swarm string
	kuboSwarm, kuboGateway              string
}

// Default ports of IPFS Cluster and kubo, which DistinctHosts uses.
const (
	restPort        = 9094
	proxyPort       = 9095
	swarmPort       = 9096
	pinsvcPort      = 9097
	kuboAPIPort     = 5001
	kuboSwarmPort   = 4001
	kuboGatewayPort = 8080
)

// hostSeq numbers the clusters started with DistinctHosts in this test
// binary, so that each has its own 127.0.N.0/24.
var hostSeq atomic.Int32

func (c *Cluster) peerAddrs(t testing.TB, n int) []peerAddrs {
	t.Helper()
	addrs := make([]peerAddrs, n)
	if c.opts.distinctHosts {
		seq := int(hostSeq.Add(1))
		if seq > 254 || n > 254 {
			t.Fatalf("cannot give %d peers their own loopback address: cluster %d of this test binary, 254 of either at most", n, seq)
		}
		for i := range addrs {
			host := fmt.Sprintf("127.0.%d.%d", seq, i+1)
			at := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
			addrs[i] = peerAddrs{
				kuboAPI: at(kuboAPIPort), rest: at(restPort), proxy: at(proxyPort),
				pinsvc: at(pinsvcPort), swarm: at(swarmPort),
				kuboSwarm:   multiaddr(at(kuboSwarmPort)),
				kuboGateway: multiaddr(at(kuboGatewayPort)),
			}
		}
		return addrs
	}
	// Five ports a peer: kubo API, REST API, IPFS proxy, pinning service
	// API, cluster swarm.
	ports := freePorts(t, 5*n)
	for i := range addrs {
		addrs[i] = peerAddrs{
			kuboAPI: loopback(ports[5*i]), rest: loopback(ports[5*i+1]), proxy: loopback(ports[5*i+2]),
			pinsvc: loopback(ports[5*i+3]), swarm: loopback(ports[5*i+4]),
		}
	}
	return addrs
}

// Option changes how Start configures the cluster.
type Option func(*options)

type options struct {
	distinctHosts          bool
	authUser, authPassword string
	edits                  []func(peer int, cfg map[string]any) error
}

// DistinctHosts gives each peer a loopback address of its own,
// 127.0.N.<i+1> (N counts the clusters of the test binary), with the
// default ports of IPFS Cluster (REST API 9094, IPFS proxy 9095, swarm
// 9096, pinning service API 9097) and kubo (API 5001, swarm 4001, gateway
// 8080) on it, as if each peer were a machine of its own. Then the IPFS
// addresses that GET /peers reports for a peer are on its own host, whose
// port 5001 is its kubo API: the default from which ingestd finds a peer's
// kubo (issue 9). Without it every peer is on 127.0.0.1 with free ports,
// and GET /peers cannot tell their kubo APIs apart.
func DistinctHosts() Option {
	return func(o *options) { o.distinctHosts = true }
}

// BasicAuth makes every peer's REST API require HTTP basic auth with this
// user and password (service.json api.restapi.basic_auth_credentials).
// The harness's own calls and Cluster.Ctl send them; Ctl and CtlRun take
// them as ctl flags (--basic-auth USER:PASSWORD --force-http).
func BasicAuth(user, password string) Option {
	return func(o *options) { o.authUser, o.authPassword = user, password }
}

// EditConfig runs edit on each peer's service.json, decoded into maps (with
// json.Number for numbers), after the harness's own changes and before the
// service first starts. An error fails the test.
func EditConfig(edit func(peer int, cfg map[string]any) error) Option {
	return func(o *options) { o.edits = append(o.edits, edit) }
}

// initPeer runs `ipfs-cluster-service init --consensus crdt` in p.Dir and
// reads the new identity. It takes about a second (key generation), so
// Start runs one per peer at once.
func (c *Cluster) initPeer(p *Peer) error {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "--config", p.Dir, "init", "--consensus", "crdt")
	cmd.Env = commandEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot run ipfs-cluster-service init for %s: %w\n%s", p.Name, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(p.Dir, "identity.json"))
	if err != nil {
		return fmt.Errorf("cannot read identity of %s: %w", p.Name, err)
	}
	var ident struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &ident); err != nil || ident.ID == "" {
		return fmt.Errorf("cannot decode identity.json of %s: %v (%s)", p.Name, err, raw)
	}
	p.ID = ident.ID
	return nil
}

// EnvLogLevel, if set, is passed to every ipfs-cluster-service as
// --loglevel: "debug" for all of IPFS Cluster's components, or a list such as
// "info,crdt:debug,nat:debug" (any go-log subsystem, libp2p's included).
// A failed test prints the services' logs.
const EnvLogLevel = "INGESTD_CLUSTER_LOGLEVEL"

// startService starts p's ipfs-cluster-service daemon, logging to a new
// file in p.Dir. It does not wait for it.
func (c *Cluster) startService(t testing.TB, p *Peer) {
	t.Helper()
	p.starts++
	p.LogPath = filepath.Join(p.Dir, fmt.Sprintf("service-%d.log", p.starts))
	args := []string{"--config", p.Dir}
	if lvl := os.Getenv(EnvLogLevel); lvl != "" {
		args = append(args, "--loglevel", lvl)
	}
	proc, err := startProcess(c.bin, append(args, "daemon"), p.LogPath)
	if err != nil {
		t.Fatalf("cannot start ipfs-cluster-service for %s: %v", p.Name, err)
	}
	p.proc = proc
}

// waitAPI polls until p's REST API answers GET /id with p's ID.
func (c *Cluster) waitAPI(t testing.TB, p *Peer) {
	t.Helper()
	WaitFor(t, p.Name+" REST API", func() error {
		if p.proc.exited() {
			return fmt.Errorf("%w: %s exited: %v", errGiveUp, p.Name, p.proc.waitErr)
		}
		var id PeerInfo
		if err := c.GetJSON(p.Index, "/id", &id); err != nil {
			return err
		}
		if id.ID != p.ID {
			return fmt.Errorf("%w: %s answers as %q, want %q", errGiveUp, p.APIAddr, id.ID, p.ID)
		}
		return nil
	})
}

// WaitReady polls until every peer sees every other: GET /peers on each
// peer lists all the cluster's peers without an error, and GET
// /monitor/metrics/freespace on each peer has an unexpired, valid freespace
// metric from every peer. Every peer must be running.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	WaitFor(t, "cluster ready", func() error {
		for _, p := range c.Peers {
			if !p.Running() {
				return fmt.Errorf("%w: %s is not running", errGiveUp, p.Name)
			}
		}
		for _, p := range c.Peers {
			if err := c.peerSeesAll(p); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *Cluster) peerSeesAll(p *Peer) error {
	peers, err := c.PeerList(p.Index)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, q := range peers {
		if q.Error != "" {
			return fmt.Errorf("%s lists %s with error %q", p.Name, q.ID, q.Error)
		}
		seen[q.ID] = true
	}
	metrics, err := c.Metrics(p.Index, "freespace")
	if err != nil {
		return err
	}
	now := time.Now()
	fresh := map[string]bool{}
	for _, m := range metrics {
		if m.Valid && !m.Expired(now) {
			fresh[m.Peer] = true
		}
	}
	for _, q := range c.Peers {
		if !seen[q.ID] {
			return fmt.Errorf("%s: GET /peers does not list %s (%s)", p.Name, q.Name, q.ID)
		}
		if !fresh[q.ID] {
			err := fmt.Errorf("%s: no valid freespace metric from %s (%s)", p.Name, q.Name, q.ID)
			// The usual reason: that peer cannot reach its kubo.
			var id PeerInfo
			if c.GetJSON(q.Index, "/id", &id) == nil && id.IPFS.Error != "" {
				err = fmt.Errorf("%w; its GET /id reports IPFS error %q", err, id.IPFS.Error)
			}
			return err
		}
	}
	return nil
}

// Kill kills peer i's service (SIGKILL), as a crash would, and waits until
// it has exited.
//
// IPFS Cluster 1.1.6 writes its pebble datastore without syncing, so a
// killed peer can come back without the pins it had learned, even 20s
// before the kill ("crdt Datastore created. Number of heads: 0" in its
// log), and report such a CID "unpinned" until the CRDT rebroadcast
// (consensus.crdt rebroadcast_interval, 1m) brings it back: 2m8s in one
// run here. A peer stopped with Stop keeps them.
func (c *Cluster) Kill(i int) {
	if p := c.Peers[i]; p.proc != nil {
		p.proc.kill()
	}
}

// Stop stops peer i's service with SIGTERM, as an operator would, and
// waits until it has exited. It returns nil if the service shut down by
// itself with status 0, and an error if it exited otherwise or had to be
// killed after 30s.
func (c *Cluster) Stop(i int) error {
	p := c.Peers[i]
	if p.proc == nil {
		return nil
	}
	if err := p.proc.stop(stopGrace); err != nil {
		return fmt.Errorf("cannot stop %s cleanly: %w", p.Name, err)
	}
	return nil
}

// Restart starts peer i's service again, with the same folder, identity,
// state and addresses, after Kill or Stop, and waits until its REST API
// answers (call WaitReady to wait for the whole cluster).
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	p := c.Peers[i]
	if p.Running() {
		t.Fatalf("cannot restart %s: it is running", p.Name)
	}
	c.startService(t, p)
	c.waitAPI(t, p)
}

// KillKubo kills peer i's kubo daemon (SIGKILL). The service keeps running:
// its status for the CIDs allocated to it turns "cluster_error", and its
// freespace metric is no longer sent, so it expires after DefaultMetricTTL.
func (c *Cluster) KillKubo(i int) { c.Peers[i].Kubo.Kill() }

// RestartKubo starts peer i's kubo daemon again on the same repository and
// API address. Statuses recover at once, but the peer's freespace metric
// only on its informer's next run: IPFS Cluster 1.1.6 retries an informer
// whose metric was invalid after 15s whatever the metric_ttl, so a
// WaitReady right after takes up to that long (12.9s here). The new daemon is stopped when t ends: pass the t that
// started the cluster (then the services are stopped first, as in Start),
// not a subtest's, unless the daemon should die with the subtest.
func (c *Cluster) RestartKubo(t testing.TB, i int) {
	t.Helper()
	p := c.Peers[i]
	if !p.Kubo.Exited() {
		t.Fatalf("cannot restart kubo of %s: it is running", p.Name)
	}
	p.Kubo = kubotest.StartDaemon(t, p.kuboRepo)
	if t == c.t {
		// Cleanups run last-in first-out: registering the services' stop
		// again keeps it ahead of the new daemon's (a second stop is a
		// no-op).
		t.Cleanup(c.stopAll)
	}
}

// Ctl runs ipfs-cluster-ctl against peer i's REST API (see Ctl), with the
// BasicAuth credentials if the cluster has them.
func (c *Cluster) Ctl(t testing.TB, i int, args ...string) []byte {
	t.Helper()
	return Ctl(t, c.Peers[i].URL(), append(c.ctlAuth(), args...)...)
}

// CtlRun is Ctl without failing on a non-zero exit (see CtlRun).
func (c *Cluster) CtlRun(t testing.TB, i int, args ...string) CtlResult {
	t.Helper()
	return CtlRun(t, c.Peers[i].URL(), append(c.ctlAuth(), args...)...)
}

func (c *Cluster) ctlAuth() []string {
	if c.opts.authUser == "" {
		return nil
	}
	// ctl refuses to send credentials over plain HTTP without --force-http.
	return []string{"--basic-auth", c.opts.authUser + ":" + c.opts.authPassword, "--force-http"}
}

// cleanup stops every service and, if the test failed, prints their logs.
func (c *Cluster) cleanup(t testing.TB) {
	c.stopAll()
	if t.Failed() {
		for _, p := range c.Peers {
			c.logOutput(t, p)
		}
	}
}

func (c *Cluster) stopAll() {
	for i := range c.Peers {
		_ = c.Stop(i) // a failure shows in the logs printed for a failed test
	}
}

func (c *Cluster) logOutput(t testing.TB, p *Peer) {
	t.Helper()
	for n := 1; n <= p.starts; n++ {
		path := filepath.Join(p.Dir, fmt.Sprintf("service-%d.log", n))
		out, err := os.ReadFile(path)
		if err != nil {
			t.Logf("cannot read %s log: %v", p.Name, err)
			continue
		}
		if len(out) > logTail {
			out = append([]byte("[...]"), out[len(out)-logTail:]...)
		}
		t.Logf("ipfs-cluster-service %s (%s), start %d:\n%s", p.Name, p.ID, n, out)
	}
}

// errGiveUp marks an error after which WaitFor stops polling at once.
var errGiveUp = errors.New("giving up")

// WaitFor calls cond every 100ms until it returns nil, and fails the test
// with cond's last error if it returns one made by GiveUp or if the test's
// deadline (go test -timeout) is less than 30s away (or a quarter of the
// time that was left when WaitFor began, if less), leaving that time to
// cleanups. There is no other time limit: a slow machine waits longer, a
// fast one no longer than it needs.
func WaitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	ctx := context.Background()
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok {
			// A short -timeout gets a proportionate margin.
			margin := min(cleanupMargin, time.Until(d)/4)
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, d.Add(-margin))
			defer cancel()
		}
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return
		}
		if errors.Is(err, errGiveUp) {
			t.Fatalf("cannot wait for %s: %v", what, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cannot wait for %s: gave up after %v, near the test deadline; last error: %v",
				what, time.Since(start).Round(time.Millisecond), err)
		case <-tick.C:
		}
	}
}

// GiveUp wraps err so that WaitFor fails at once instead of polling on,
// for a condition that cannot become true any more (a process exited).
func GiveUp(err error) error { return fmt.Errorf("%w: %w", errGiveUp, err) }

func newSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("cannot make a cluster secret: %v", err)
	}
	return hex.EncodeToString(b)
}

// Ports for the harness come from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768-60999 in a new namespace), which is
// where port 0 and outgoing connections take theirs: a port picked by
// listening on port 0 and closing could be handed to a kubo daemon's port-0
// listener or to a connection before the service binds it. Below the range
// only the harness hands ports out, and in the test's own namespace no
// other program listens.
const firstPort = 20000

// nextPort is the last port handed out, less firstPort.
var nextPort atomic.Int32

// freePorts returns n distinct TCP ports on 127.0.0.1 that nothing listens
// on, from firstPort up, never the same twice in one test binary.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	limit := ephemeralLow()
	var ports []int
	for len(ports) < n {
		port := firstPort + int(nextPort.Add(1))
		if port >= limit {
			t.Fatalf("cannot find a free port: %d and up are the ephemeral range", limit)
		}
		ln, err := net.Listen("tcp", loopback(port))
		if err != nil {
			continue // something listens there: take the next
		}
		ln.Close()
		ports = append(ports, port)
	}
	return ports
}

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(raw), &lo, &hi); err != nil || lo <= 0 {
		return 32768
	}
	return lo // at or below firstPort, freePorts fails: better than a race
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// multiaddr turns "HOST:PORT" (IPv4) into "/ip4/HOST/tcp/PORT".
func multiaddr(hostport string) string {
	host, port, _ := net.SplitHostPort(hostport)
	return "/ip4/" + host + "/tcp/" + port
}

// process is one started program whose exit is awaited in the background.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // cmd.Wait's result, valid after done is closed
}

func startProcess(bin string, args []string, logPath string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot create log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = commandEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	err = cmd.Start()
	// The child has its own descriptor; ours is no longer needed.
	logFile.Close()
	if err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits until the process has been reaped.
func (p *process) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill() // fails only if it already exited
	}
	<-p.done
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It returns nil only if the process exited with status 0 after
// this SIGTERM; an exit before it, or after it with another status, or a
// kill, is an error.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		if p.waitErr != nil {
			return fmt.Errorf("had exited before: %w", p.waitErr)
		}
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.waitErr
	case <-timer.C:
		p.kill()
		return fmt.Errorf("still running %v after SIGTERM, killed", grace)
	}
}
