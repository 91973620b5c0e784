package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// Version is the IPFS Cluster release the harness runs; it must match
// CLUSTER_VERSION in .ci/cluster.sh and the ctl that .ci/ctl.sh builds.
const Version = "1.1.6"

const (
	// EnvServiceBin overrides the ipfs-cluster-service binary (see
	// ServiceBinary).
	EnvServiceBin = "INGESTD_CLUSTER_BIN"
	// EnvCtlBin overrides the ipfs-cluster-ctl binary (see CtlBinary).
	EnvCtlBin = "INGESTD_CTL_BIN"
)

// ServiceBinary returns the ipfs-cluster-service binary: $INGESTD_CLUSTER_BIN
// if set, else <repo root>/.cache/bin/ipfs-cluster-service (as built by `bash
// .ci/cluster.sh`). A binary that is missing or does not report Version skips
// the test, or fails it when $INGESTD_REQUIRE_KUBO is true or $CI=true.
//
// It runs `ipfs-cluster-service --version`, which prints and exits before
// any component starts; callers are still expected to have checked
// CheckLoopbackOnly first, as Start does.
func ServiceBinary(t testing.TB) string {
	t.Helper()
	return binary(t, EnvServiceBin, "ipfs-cluster-service", "cluster.sh")
}

// CtlBinary returns the ipfs-cluster-ctl binary: $INGESTD_CTL_BIN if set,
// else <repo root>/.cache/bin/ipfs-cluster-ctl (as built by `bash
// .ci/ctl.sh`), with the same skip/fail rules as ServiceBinary.
func CtlBinary(t testing.TB) string {
	t.Helper()
	return binary(t, EnvCtlBin, "ipfs-cluster-ctl", "ctl.sh")
}

func binary(t testing.TB, env, name, script string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		root, err := kubotest.RepoRoot()
		if err != nil {
			t.Fatalf("cannot locate %s: %v", name, err)
		}
		bin = filepath.Join(root, ".cache", "bin", name)
	}
	if err := checkExecutable(bin); err != nil {
		missingBinary(t, script, env, "%s not available: %v", name, err)
	}
	v, err := binaryVersion(bin)
	if err != nil {
		missingBinary(t, script, env, "%s not usable: %v", name, err)
	}
	// Both print "<name> version 1.1.6".
	if !strings.HasSuffix(v, " "+Version) {
		missingBinary(t, script, env, "%s reports %q, want %s", bin, v, Version)
	}
	return bin
}

// missingBinary skips (locally) or fails (CI) a test that cannot get a
// binary.
func missingBinary(t testing.TB, script, env, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf("; run `bash .ci/%s` (or set %s)", script, env)
	if requireBinaries() {
		t.Fatalf("%s [%s or CI is set]", msg, kubotest.EnvRequire)
	}
	t.Skip(msg)
}

// requireBinaries reports whether a missing binary must fail the test:
// $INGESTD_REQUIRE_KUBO as kubotest reads it (anything set but unparsable
// counts as true), or $CI=true.
func requireBinaries() bool {
	if ci, err := strconv.ParseBool(os.Getenv("CI")); err == nil && ci {
		return true
	}
	v := os.Getenv(kubotest.EnvRequire)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
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

// versions caches `--version` per binary path.
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
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = commandEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	res := versionResult{version: strings.TrimSpace(string(out))}
	if err != nil {
		res.err = fmt.Errorf("cannot run %s --version: %w (stderr: %s)", bin, err, bytes.TrimSpace(stderr.Bytes()))
	}
	versions.Store(bin, res)
	return res.version, res.err
}

// commandEnv is the environment of every IPFS Cluster process. Variables
// that would override service.json (IPFS Cluster applies CLUSTER_* to its
// configuration) or point a process elsewhere (IPFS_CLUSTER_PATH, IPFS_*),
// or change its logging, are dropped so that tests behave the same
// everywhere.
func commandEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "CLUSTER_"), strings.HasPrefix(k, "IPFS_"),
			strings.HasPrefix(k, "GOLOG_"), strings.HasPrefix(k, "LIBP2P_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}
