// Package clustertest runs a real IPFS Cluster for ingestd's tests: n peers
// of ipfs-cluster-service 1.1.6 with CRDT consensus, each with its own kubo
// daemon (kubotest), all on loopback, and the real ipfs-cluster-ctl to
// drive them. Issue 9 (ingestd as the fast /add in front of a cluster) is
// proven against it.
//
// # The network namespace
//
// IPFS Cluster's service always starts NAT port-mapping discovery towards
// the default gateway; nothing a test does may leave the machine. So the
// service may only run in a network namespace that has nothing but
// loopback, together with everything that talks to it (its kubo daemons,
// ingestd, the test itself). Start refuses to run anywhere else
// (CheckLoopbackOnly). Tests that use the package carry the build tag
// "netns", so that `go test ./...` does not build them, and run through
//
//	bash .ci/netns-test.sh ./PKG [-run REGEXP] [-v] ...   # as root; make cluster-test
//
// which builds kubo, ipfs-cluster-ctl, ipfs-cluster-service and the test
// binary first (there is no module proxy inside), then runs the test binary
// under `unshare --net --pid --fork` after `ip link set lo up`. The new PID
// namespace also ends every process the test left behind when it exits,
// even after a panic or a -timeout, when no cleanup runs.
//
// # Use
//
// A test in another package, in a file that starts with "//go:build netns":
//
//	func TestAddThroughIngestd(t *testing.T) {
//		c := clustertest.Start(t, 3, clustertest.DistinctHosts())
//		url := startIngestd(t, "--cluster", c.Peers[0].URL()) // the test's own helper
//		out := clustertest.Ctl(t, url, "add", file) // the real ctl, against ingestd
//		cid := strings.Fields(string(out))[1]     // "added <cid> <name>"
//		clustertest.WaitFor(t, cid+" pinned", func() error {
//			g, err := c.Status(1, cid) // GET /pins/<cid> on peer 1 itself
//			if err != nil {
//				return err
//			}
//			if st := g.PeerMap[c.Peers[2].ID].Status; st != "pinned" {
//				return fmt.Errorf("peer2: %s", st)
//			}
//			return nil
//		})
//		c.KillKubo(2) // and so on: Kill, Stop, Restart, RestartKubo, Metrics
//	}
//
// run with `bash .ci/netns-test.sh ./PKG -run TestAddThroughIngestd -v`; add
// the package to the Makefile's cluster-test target.
//
// # What is configured
//
// Each peer gets `ipfs-cluster-service init --consensus crdt` in its own
// folder and these service.json changes (config.go, configure): a shared
// secret; a peername; TCP-only listen addresses on 127.0.0.1 with free
// ports (below the ephemeral range) for the cluster swarm, the REST API,
// the IPFS proxy and the pinning service API, or with DistinctHosts a
// 127.0.N.x of its own per peer with the default ports; the REST API's
// access log in its own file; the peer's kubo API as ipfshttp and proxy
// node_multiaddress; the other peers' swarm addresses as peer_addresses
// (that is how they find each other); mDNS off; monitor_ping_interval 2s
// and informer metric_ttl 4s instead of 15s and 30s
// (DefaultMonitorPingInterval, DefaultMetricTTL). BasicAuth and EditConfig
// change more.
//
// # Binaries
//
// ServiceBinary and CtlBinary find the binaries that .ci/cluster.sh and
// .ci/ctl.sh build ($INGESTD_CLUSTER_BIN, $INGESTD_CTL_BIN override them),
// and kubotest finds kubo. A missing binary skips the test, or fails it when
// $INGESTD_REQUIRE_KUBO or $CI is true.
//
// # Waiting
//
// Nothing sleeps: WaitReady, Restart and WaitFor poll, with no time limit
// of their own but the test's deadline (less 30s, so that cleanups still
// stop the processes and print the services' logs).
package clustertest
