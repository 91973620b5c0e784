package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

// CtlResult is the outcome of one ipfs-cluster-ctl run.
type CtlResult struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// Ctl runs the real ipfs-cluster-ctl (CtlBinary) with `--host <api>` and
// args, and returns its stdout; a non-zero exit fails the test with its
// output (the ctl prints the API's errors on stdout).
// api is a REST API address: "http://127.0.0.1:9094", "127.0.0.1:9094" or a
// multiaddr, so the same helper drives a cluster peer or an ingestd in front
// of it. Flags such as --basic-auth or --enc=json go in args.
func Ctl(t testing.TB, api string, args ...string) []byte {
	t.Helper()
	res := CtlRun(t, api, args...)
	if res.ExitCode != 0 {
		t.Fatalf("ipfs-cluster-ctl --host %s %s: exit %d: %s %s", api, strings.Join(args, " "),
			res.ExitCode, bytes.TrimSpace(res.Stdout), bytes.TrimSpace(res.Stderr))
	}
	return res.Stdout
}

// CtlRun is Ctl but returns the exit code and both outputs instead of
// failing on a non-zero exit, for tests that assert an error. It fails the
// test only if the ctl cannot be started at all.
func CtlRun(t testing.TB, api string, args ...string) CtlResult {
	t.Helper()
	host, err := ctlHost(api)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, CtlBinary(t), append([]string{"--host", host}, args...)...)
	cmd.Env = commandEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := CtlResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
		res.ExitCode = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("cannot run ipfs-cluster-ctl %s: %v (stderr: %s)", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return res
}

// ctlHost turns an address into the multiaddr that ctl's --host wants.
func ctlHost(api string) (string, error) {
	if strings.HasPrefix(api, "/") {
		return api, nil
	}
	hostport := api
	if strings.Contains(api, "://") {
		u, err := url.Parse(api)
		if err != nil {
			return "", fmt.Errorf("cannot parse API address %q: %w", api, err)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("cannot parse API address %q: %w", api, err)
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return "/dns/" + host + "/tcp/" + port, nil
	case ip.To4() != nil:
		return "/ip4/" + host + "/tcp/" + port, nil
	default:
		return "/ip6/" + host + "/tcp/" + port, nil
	}
}
