package clustertest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// ErrNotIsolated is returned by CheckLoopbackOnly when the process can reach
// a network other than loopback.
var ErrNotIsolated = errors.New("clustertest: not in a loopback-only network namespace")

// runnerHint tells a developer how to run these tests properly.
const runnerHint = "IPFS Cluster's service always starts NAT port-mapping discovery towards the default gateway, " +
	"so it may only run in a network namespace that has nothing but loopback; " +
	"run the test with `bash .ci/netns-test.sh ./PKG [flags]` (as root), which builds every binary " +
	"and then runs the test binary under `unshare --net`"

// CheckLoopbackOnly returns nil if the process is in a network namespace
// whose only interface is an up loopback and that has no default route (IPv4
// or IPv6), i.e. nothing it starts can reach another machine. Otherwise it
// returns an error wrapping ErrNotIsolated that names what it found.
//
// Start calls it before anything else; tests that start other processes
// which talk to the cluster (ingestd, say) may call it too.
func CheckLoopbackOnly() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("cannot list network interfaces: %w", err)
	}
	var names []string
	loUp := false
	for _, ifc := range ifaces {
		names = append(names, ifc.Name)
		if ifc.Flags&net.FlagLoopback != 0 && ifc.Flags&net.FlagUp != 0 {
			loUp = true
		}
	}
	if len(ifaces) != 1 || ifaces[0].Flags&net.FlagLoopback == 0 {
		return fmt.Errorf("%w: interfaces %v, want only the loopback", ErrNotIsolated, names)
	}
	if !loUp {
		return fmt.Errorf("%w: loopback %s is down (run `ip link set lo up` in the namespace)", ErrNotIsolated, names[0])
	}
	// With only loopback there cannot be a usable default route, but a
	// namespace set up by hand might still carry one; refuse it too.
	if r, err := defaultRoute("/proc/net/route", parseIPv4Route); err != nil {
		return err
	} else if r != "" {
		return fmt.Errorf("%w: IPv4 default route: %s", ErrNotIsolated, r)
	}
	if r, err := defaultRoute("/proc/net/ipv6_route", parseIPv6Route); err != nil {
		return err
	} else if r != "" {
		return fmt.Errorf("%w: IPv6 default route: %s", ErrNotIsolated, r)
	}
	return nil
}

// defaultRoute returns the first line of the route table at path that parse
// reports as a default route, or "". A missing table (IPv6 disabled) has no
// routes.
func defaultRoute(path string, parse func(fields []string) bool) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read route table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if parse(strings.Fields(sc.Text())) {
			return strings.Join(strings.Fields(sc.Text()), " "), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	return "", nil
}

// parseIPv4Route reports whether a /proc/net/route line is a default route:
// "Iface Destination Gateway Flags RefCnt Use Metric Mask ...", with
// destination and mask 00000000. The header line never matches.
func parseIPv4Route(f []string) bool {
	return len(f) >= 8 && f[1] == "00000000" && f[7] == "00000000"
}

// parseIPv6Route reports whether a /proc/net/ipv6_route line is a default
// route through a real interface: "dest destlen src srclen nexthop metric
// refcnt use flags iface" with dest ::/0. A new namespace has ::/0 routes
// on lo, which are "unreachable" rejects, not a way out.
func parseIPv6Route(f []string) bool {
	return len(f) == 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && f[9] != "lo"
}
