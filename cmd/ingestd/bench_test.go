package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/benchtool"
	"github.com/ingestd/ingestd/internal/kubotest"
)

// runCmd runs the binary and returns its stdout, stderr and exit status.
func runCmd(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatal(err)
	return "", "", -1
}

// TestBenchCommand drives `ingestd bench` end to end: the real binary
// against a running ingestd binary and a real kubo daemon. The roots it
// reports for both equal `ipfs add --only-hash` of the files `ingestd bench
// --write` puts on disk; a target that refuses connections makes its runs
// errors and the exit status 1, and the report is still printed.
func TestBenchCommand(t *testing.T) {
	bin := buildBinary(t)
	p := start(t, bin, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--gateway", "off")
	daemon := kubotest.StartDaemon(t, kubotest.NewRepo(t))
	data := []string{"--dataset", "tree", "--dirs", "3", "--files", "4", "--seed", "9", "--opt", "cid-version=1"}
	targets := []string{"--target", "ingestd=cluster:" + p.url, "--target", "kubo=kubo:" + daemon.URL()}

	stdout, stderr, code := runCmd(t, bin, append(append([]string{"bench", "--json", "--repeat", "2"}, targets...), data...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep benchtool.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("cannot decode the JSON report: %v\n%s", err, stdout)
	}
	if len(rep.Runs) != 2 || len(rep.Targets) != 2 || rep.Errors != 0 || rep.Mismatches != 0 || rep.Targets[0].Ratio <= 0 {
		t.Fatalf("report %s", stdout)
	}
	dir := t.TempDir()
	if _, stderr, code := runCmd(t, bin, append([]string{"bench", "--write", dir}, data...)...); code != 0 {
		t.Fatalf("--write: exit %d: %s", code, stderr)
	}
	ev := kubotest.NewRepo(t).AddOnlyHash(t, dir, []string{"-r", "--cid-version=1"}, "tree")
	want := ev[len(ev)-1].Hash
	for _, a := range rep.Runs[0].Results {
		if a.Root != want {
			t.Fatalf("%s reports %s for run 0, ipfs add --only-hash %s", a.Target, a.Root, want)
		}
	}
	if rep.Runs[1].Results[0].Root == want {
		t.Fatal("run 1 has run 0's content")
	}

	// Without --seed, each invocation has its own content: nothing that an
	// earlier one stored is deduplicated.
	var seeds [2]benchtool.Report
	for i := range seeds {
		stdout, stderr, code := runCmd(t, bin, "bench", "--json", "--repeat", "1", "--target", "cluster:"+p.url, "--dataset", "file", "--size", "1000")
		if code != 0 || json.Unmarshal([]byte(stdout), &seeds[i]) != nil || len(seeds[i].Runs) != 1 {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
	}
	if seeds[0].Seed == seeds[1].Seed || seeds[0].Runs[0].Results[0].Root == seeds[1].Runs[0].Results[0].Root {
		t.Fatalf("two invocations without --seed: seeds %d and %d, roots %+v %+v", seeds[0].Seed, seeds[1].Seed, seeds[0].Runs[0].Results, seeds[1].Runs[0].Results)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	stdout, stderr, code = runCmd(t, bin, append(append([]string{"bench", "--repeat", "1", "--target", "down=cluster:" + closed}, targets...), data...)...)
	if code != 1 || !strings.Contains(stdout, "ERROR down run 0") || !strings.Contains(stdout, "(all targets agree)") ||
		!strings.Contains(stderr, "adds failed") {
		t.Fatalf("with a closed port: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestBenchFlags: what cannot be run is refused before anything is sent.
func TestBenchFlags(t *testing.T) {
	f := func(args ...string) {
		t.Helper()
		err := runBench(args, io.Discard, io.Discard)
		if err == nil || errors.Is(err, benchtool.ErrAddFailed) {
			t.Fatalf("%v accepted: %v", args, err)
		}
	}
	f()                                                                // no target
	f("--target", "nope:http://127.0.0.1:1")                           // unknown kind
	f("--target", "a=cluster:http://h", "--target", "a=kubo:http://h") // same name
	f("--target", "cluster:http://h", "--dataset", "cube")
	f("--target", "cluster:http://h", "--size", "lots")
	f("--target", "cluster:http://h", "--opt", "cid-version")
	f("--target", "cluster:http://h", "--target-token", "other=T")
	f("--target", "cluster:http://h", "--baseline", "other")
	f("--target", "cluster:http://h", "--car", "--opt", "wrap-with-directory=true")
	f("--target", "cluster:http://h", "--dataset", "deep", "--depth", "5000")
	f("--write", t.TempDir()) // without --seed
}
