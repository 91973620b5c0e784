package clustertest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests start no process, so they have no build tag: `go test ./...`
// runs them outside the namespace, .ci/netns-test.sh inside it.

func TestDefaultRoute(t *testing.T) {
	f := func(name, table string, parse func([]string) bool, want string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "route")
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := defaultRoute(path, parse)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: default route %q, want %q", name, got, want)
		}
	}
	const v4Header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	// A host's table (this CI machine's), and a new namespace's, which is
	// the header alone.
	f("ipv4 host", v4Header+
		"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"+
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
		parseIPv4Route, "eth0 00000000 010200C0 0003 0 0 0 00000000 0 0 0")
	f("ipv4 namespace", v4Header, parseIPv4Route, "")
	f("ipv4 subnet only", v4Header+"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", parseIPv4Route, "")

	zero := strings.Repeat("0", 32)
	// A new namespace has ::/0 "unreachable" routes on lo: not a way out.
	nsV6 := zero + " 00 " + zero + " 00 " + zero + " ffffffff 00000001 00000000 00200200       lo\n" +
		strings.Repeat("0", 31) + "1 80 " + zero + " 00 " + zero + " 00000000 00000002 00000000 80200001       lo\n"
	f("ipv6 namespace", nsV6, parseIPv6Route, "")
	f("ipv6 host", "fd000000000000000000000000000000 40 "+zero+" 00 "+zero+" 00000100 00000001 00000000 00000001     eth0\n"+
		zero+" 00 "+zero+" 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"+nsV6,
		parseIPv6Route, zero+" 00 "+zero+" 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003 eth0")
	f("missing table", "", parseIPv6Route, "")
}

func TestDefaultRouteMissingFile(t *testing.T) {
	got, err := defaultRoute(filepath.Join(t.TempDir(), "absent"), parseIPv6Route)
	if err != nil || got != "" {
		t.Fatalf("defaultRoute(absent) = %q, %v; want no route (IPv6 disabled)", got, err)
	}
}

// TestCheckLoopbackOnly: .ci/netns-test.sh sets INGESTD_NETNS=1, and there
// the check must pass; anywhere else it must refuse (unless the machine
// really has nothing but loopback, which the test cannot tell apart).
func TestCheckLoopbackOnly(t *testing.T) {
	err := CheckLoopbackOnly()
	if os.Getenv("INGESTD_NETNS") == "1" {
		if err != nil {
			t.Fatalf("CheckLoopbackOnly in .ci/netns-test.sh's namespace: %v", err)
		}
		return
	}
	ifaces, ierr := net.Interfaces()
	if ierr != nil {
		t.Fatal(ierr)
	}
	if len(ifaces) == 1 {
		t.Skipf("only %s here and not run by .ci/netns-test.sh: nothing to refuse", ifaces[0].Name)
	}
	if !errors.Is(err, ErrNotIsolated) {
		t.Fatalf("CheckLoopbackOnly with interfaces %v = %v, want ErrNotIsolated", ifaces, err)
	}
	t.Logf("refused as expected: %v", err)
}

func TestCtlHost(t *testing.T) {
	f := func(api, want string) {
		t.Helper()
		got, err := ctlHost(api)
		if err != nil || got != want {
			t.Errorf("ctlHost(%q) = %q, %v; want %q", api, got, err, want)
		}
	}
	f("http://127.0.0.1:9094", "/ip4/127.0.0.1/tcp/9094")
	f("127.0.0.1:9094", "/ip4/127.0.0.1/tcp/9094")
	f("http://[::1]:9094", "/ip6/::1/tcp/9094")
	f("http://localhost:9094", "/dns/localhost/tcp/9094")
	f("/ip4/127.0.0.1/tcp/9094", "/ip4/127.0.0.1/tcp/9094")
}
