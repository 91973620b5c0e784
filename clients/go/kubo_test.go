package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kubo is the CID oracle: one repository (`ipfs init --profile=test`) in a
// temporary directory, used through the CLI without a daemon. Commands take
// the repository lock, so they run one at a time.
type kubo struct {
	bin  string
	repo string
	mu   sync.Mutex
}

var (
	kuboOnce sync.Once
	kuboInst *kubo
	kuboErr  error
)

// kuboCommandTimeout bounds one CLI call: a hang guard so that a wedged kubo
// fails the test with its stderr.
const kuboCommandTimeout = 5 * time.Minute

// needKubo returns the oracle. Without a kubo binary the test is skipped
// with instructions, or failed when CI=true or INGESTD_REQUIRE_KUBO is set:
// CI must never lose these tests silently.
func needKubo(t *testing.T) *kubo {
	t.Helper()
	bin := os.Getenv("INGESTD_IPFS_BIN")
	if bin == "" {
		if repoRoot == "" {
			t.Fatal(buildErr)
		}
		bin = filepath.Join(repoRoot, ".cache", "bin", "ipfs")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		msg := fmt.Sprintf("kubo binary %s is not available (run `bash .ci/kubo.sh` or set INGESTD_IPFS_BIN)", bin)
		if requireKubo() {
			t.Fatalf("%s; CI=true or INGESTD_REQUIRE_KUBO is set, so this is a failure", msg)
		}
		t.Skip(msg)
	}
	kuboOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ingestd-clients-kubo-")
		if err != nil {
			kuboErr = err
			return
		}
		k := &kubo{bin: bin, repo: filepath.Join(dir, "ipfs")}
		if _, err := k.runErr("", "init", "--profile=test"); err != nil {
			kuboErr = err
			os.RemoveAll(dir)
			return
		}
		kuboInst = k
	})
	if kuboErr != nil {
		t.Fatalf("cannot set up the kubo oracle: %v", kuboErr)
	}
	return kuboInst
}

func requireKubo() bool {
	if os.Getenv("CI") == "true" {
		return true
	}
	v := os.Getenv("INGESTD_REQUIRE_KUBO")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b // anything unparsable asks for the strict mode
}

func closeKubo() {
	if kuboInst != nil {
		os.RemoveAll(filepath.Dir(kuboInst.repo))
	}
}

func (k *kubo) runErr(dir string, args ...string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), kuboCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Dir = dir
	env := []string{"IPFS_PATH=" + k.repo, "IPFS_TELEMETRY=off", "GOLOG_LOG_LEVEL=error"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IPFS_") && !strings.HasPrefix(kv, "GOLOG_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ipfs %s: %v (stderr: %s)", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

func (k *kubo) run(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	out, err := k.runErr(dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kuboEntry is one "added <cid> <name>" line of `ipfs add`.
type kuboEntry struct {
	Name string
	Cid  string
}

// add runs `ipfs add --progress=false <flags> -- <paths>` in dir and returns
// kubo's entries in its order (for -r and -w the root comes last). The
// blocks are stored in the oracle's repository so that sizeOf and dagExport
// can read them.
func (k *kubo) add(t *testing.T, dir string, flags []string, paths ...string) []kuboEntry {
	t.Helper()
	args := append([]string{"add", "--progress=false", "--pin=false"}, flags...)
	args = append(append(args, "--"), paths...)
	out := k.run(t, dir, args...)
	var entries []kuboEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "added ")
		if !ok {
			t.Fatalf("unexpected `ipfs add` output line %q", line)
		}
		// The wrapping directory of -w has an empty name.
		c, name, _ := strings.Cut(rest, " ")
		entries = append(entries, kuboEntry{Name: name, Cid: c})
	}
	if len(entries) == 0 {
		t.Fatalf("`ipfs %s` reported nothing", strings.Join(args, " "))
	}
	return entries
}

// root returns the CID kubo reports last: the root of the add.
func root(entries []kuboEntry) string { return entries[len(entries)-1].Cid }

// sizeOf returns the cumulative DAG size of cid, the number kubo reports as
// an add's Size (spec §4.4: AddedOutput.size is that number).
func (k *kubo) sizeOf(t *testing.T, cid string) uint64 {
	t.Helper()
	out := k.run(t, "", "files", "stat", "--format=<cumulsize>", "/ipfs/"+cid)
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("cannot parse `ipfs files stat` output %q: %v", out, err)
	}
	return n
}

// dagExport returns the CARv1 `ipfs dag export` writes for cid.
func (k *kubo) dagExport(t *testing.T, cid string) []byte {
	t.Helper()
	return k.run(t, "", "dag", "export", "--progress=false", cid)
}

// dagBytes returns the total size of the unique blocks of the DAG of cid.
func (k *kubo) dagBytes(t *testing.T, cid string) uint64 {
	t.Helper()
	out := k.run(t, "", "dag", "stat", "--progress=false", "--enc=json", cid)
	var st struct{ TotalSize uint64 }
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("cannot parse `ipfs dag stat` output %q: %v", out, err)
	}
	return st.TotalSize
}
