package clients

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
	files "github.com/ipfs/boxo/files"
)

// randBytes returns n pseudo-random bytes that depend only on seed, so that
// content (and the CIDs kubo gives for it) is the same on every run.
func randBytes(seed string, n int) []byte {
	var key [32]byte
	copy(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// tree describes files to create on disk: a path ending in "/" is an empty
// directory, a value starting with "->" is a symlink to the rest.
type tree map[string]string

func writeTree(t *testing.T, dir string, tr tree) {
	t.Helper()
	for p, content := range tr {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// add runs the client's Add and returns every object it streamed.
func add(t *testing.T, c client.Client, params api.AddParams, paths ...string) []api.AddedOutput {
	t.Helper()
	outs, err := collect(func(out chan<- api.AddedOutput) error {
		return c.Add(t.Context(), paths, params, out)
	})
	if err != nil {
		t.Fatalf("Add %v: %v (objects before the error: %+v)", paths, err, outs)
	}
	if len(outs) == 0 {
		t.Fatalf("Add %v: no output", paths)
	}
	return outs
}

// checkAgainstKubo asserts what spec §4.4 promises for an unixfs add: the
// last object is the root, every reported node (files, symlinks,
// directories, the wrapper) has kubo's CID for the same name, and its size
// is kubo's cumulative size. Progress objects (cid null) are skipped.
func checkAgainstKubo(t *testing.T, k *kubo, outs []api.AddedOutput, want []kuboEntry) {
	t.Helper()
	var nodes []api.AddedOutput
	for _, o := range outs {
		if o.Cid.Defined() {
			nodes = append(nodes, o)
		}
	}
	if len(nodes) == 0 {
		t.Fatalf("no object with a CID in %+v", outs)
	}
	if got := nodes[len(nodes)-1].Cid.String(); got != root(want) {
		t.Errorf("last object (the root) has CID %s, kubo's root is %s", got, root(want))
	}
	got := map[string]string{}
	for _, o := range nodes {
		got[o.Name] = o.Cid.String()
	}
	wantMap := map[string]string{}
	for _, e := range want {
		wantMap[e.Name] = e.Cid
	}
	if !equalMaps(got, wantMap) {
		t.Errorf("reported nodes differ from kubo's\n got: %v\nwant: %v", sortedPairs(got), sortedPairs(wantMap))
	}
	for _, o := range nodes {
		if ws := k.sizeOf(t, o.Cid.String()); o.Size != ws {
			t.Errorf("%q (%s): size %d, kubo's cumulative size is %d", o.Name, o.Cid, o.Size, ws)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func sortedPairs(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, "\""+k+"\"="+v)
	}
	sort.Strings(s)
	return s
}

func TestAdd(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	dirTree := tree{
		"dir1/a.txt":     "aaa\n",
		"dir1/sub/b.txt": "bbb\n",
		"dir1/empty/":    "",
		"dir1/link":      "->a.txt",
		"dir1/.hidden":   "not sent unless Hidden is set\n",
	}
	cases := []struct {
		name      string
		tree      tree
		paths     []string
		params    func(*api.AddParams)
		kuboFlags []string
	}{{
		name:  "one file",
		tree:  tree{"hello.txt": "hello world\n"},
		paths: []string{"hello.txt"},
	}, {
		name:      "directory with an empty directory and a symlink",
		tree:      dirTree,
		paths:     []string{"dir1"},
		params:    func(p *api.AddParams) { p.Recursive = true },
		kuboFlags: []string{"-r"},
	}, {
		name:      "directory with hidden files",
		tree:      dirTree,
		paths:     []string{"dir1"},
		params:    func(p *api.AddParams) { p.Recursive = true; p.Hidden = true },
		kuboFlags: []string{"-r", "--hidden"},
	}, {
		name:      "two files wrapped in a directory",
		tree:      tree{"hello.txt": "hello world\n", "dir1/a.txt": "aaa\n"},
		paths:     []string{"hello.txt", "dir1/a.txt"},
		params:    func(p *api.AddParams) { p.Wrap = true },
		kuboFlags: []string{"--wrap-with-directory"},
	}, {
		// The client always sends raw-leaves, so CidVersion 1 alone means
		// CIDv1 with dag-pb leaves (spec §4.1: cid-version implies raw
		// leaves only when raw-leaves is not given).
		name:      "cid-version 1 with raw-leaves=false as the client sends it",
		tree:      tree{"two-chunks.bin": string(randBytes("two-chunks", 300<<10))},
		paths:     []string{"two-chunks.bin"},
		params:    func(p *api.AddParams) { p.CidVersion = 1 },
		kuboFlags: []string{"--cid-version=1", "--raw-leaves=false"},
	}, {
		name:      "cid-version 1 with raw leaves",
		tree:      tree{"two-chunks.bin": string(randBytes("two-chunks", 300<<10))},
		paths:     []string{"two-chunks.bin"},
		params:    func(p *api.AddParams) { p.CidVersion = 1; p.RawLeaves = true },
		kuboFlags: []string{"--cid-version=1"},
	}, {
		name:      "raw leaves with CIDv0",
		tree:      tree{"two-chunks.bin": string(randBytes("two-chunks", 300<<10))},
		paths:     []string{"two-chunks.bin"},
		params:    func(p *api.AddParams) { p.RawLeaves = true },
		kuboFlags: []string{"--raw-leaves"},
	}, {
		name:      "balanced DAG two levels deep",
		tree:      tree{"deep.bin": string(randBytes("deep", 400<<10))},
		paths:     []string{"deep.bin"},
		params:    func(p *api.AddParams) { p.Chunker = "size-1024" },
		kuboFlags: []string{"--chunker=size-1024"},
	}, {
		name:      "trickle layout",
		tree:      tree{"trickle.bin": string(randBytes("trickle", 40<<10))},
		paths:     []string{"trickle.bin"},
		params:    func(p *api.AddParams) { p.Layout = "trickle"; p.Chunker = "size-256" },
		kuboFlags: []string{"--trickle", "--chunker=size-256"},
	}, {
		name:      "rabin chunker",
		tree:      tree{"rabin.bin": string(randBytes("rabin", 64<<10))},
		paths:     []string{"rabin.bin"},
		params:    func(p *api.AddParams) { p.Chunker = "rabin-2048-4096-8192" },
		kuboFlags: []string{"--chunker=rabin-2048-4096-8192"},
	}, {
		name:      "blake2b-256",
		tree:      tree{"hello.txt": "hello world\n"},
		paths:     []string{"hello.txt"},
		params:    func(p *api.AddParams) { p.CidVersion = 1; p.RawLeaves = true; p.HashFun = "blake2b-256" },
		kuboFlags: []string{"--cid-version=1", "--hash=blake2b-256"},
	}, {
		name:      "empty file",
		tree:      tree{"empty.txt": ""},
		paths:     []string{"empty.txt"},
		kuboFlags: nil,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tc.tree)
			want := k.add(t, dir, tc.kuboFlags, tc.paths...)

			params := api.DefaultAddParams()
			if tc.params != nil {
				tc.params(&params)
			}
			var paths []string
			for _, p := range tc.paths {
				paths = append(paths, filepath.Join(dir, p))
			}
			outs := add(t, c, params, paths...)
			checkAgainstKubo(t, k, outs, want)

			// Content added through /add is pinned at once in the embedded
			// mode: its blocks are in the store before the add returns.
			rootCid := mustCid(t, root(want))
			pin, err := c.Allocation(t.Context(), rootCid)
			if err != nil {
				t.Fatalf("Allocation(root) after the add: %v", err)
			}
			if !pin.Cid.Equals(rootCid) || pin.Type != api.DataType || pin.MaxDepth != -1 {
				t.Errorf("Allocation(root) = cid %s type %s max_depth %d, want %s, pin, -1", pin.Cid, pin.Type, pin.MaxDepth, rootCid)
			}
			gpi, err := c.Status(t.Context(), rootCid, false)
			if err != nil {
				t.Fatalf("Status(root): %v", err)
			}
			if st := statusOf(t, gpi, self); st.Status != api.TrackerStatusPinned {
				t.Errorf("status right after the add is %s (error %q), want pinned", st.Status, st.Error)
			}
		})
	}
}

// TestAddPinOptions: the pin options of an add end up on the pin (spec §4.8:
// name, metadata, expiry and replication come from the query).
func TestAddPinOptions(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)

	dir := t.TempDir()
	writeTree(t, dir, tree{"report.pdf": string(randBytes("report", 5000))})
	want := root(k.add(t, dir, nil, "report.pdf"))

	params := api.DefaultAddParams()
	params.Name = "quarterly report ü"
	params.Metadata = map[string]string{"owner": "alice & bob", "dept": "sales"}
	params.ReplicationFactorMin = -1
	params.ReplicationFactorMax = -1
	outs := add(t, c, params, filepath.Join(dir, "report.pdf"))
	if got := outs[len(outs)-1].Cid.String(); got != want {
		t.Fatalf("root %s, kubo's is %s", got, want)
	}
	pin, err := c.Allocation(t.Context(), mustCid(t, want))
	if err != nil {
		t.Fatalf("Allocation: %v", err)
	}
	if pin.Name != params.Name {
		t.Errorf("pin name %q, want %q", pin.Name, params.Name)
	}
	if !equalMaps(pin.Metadata, params.Metadata) {
		t.Errorf("pin metadata %v, want %v", pin.Metadata, params.Metadata)
	}
	if pin.ReplicationFactorMin != -1 || pin.ReplicationFactorMax != -1 || len(pin.Allocations) != 0 {
		t.Errorf("pin replication %d/%d allocations %v, want -1/-1 and [] (everywhere)",
			pin.ReplicationFactorMin, pin.ReplicationFactorMax, pin.Allocations)
	}
}

// TestAddNoPin: no-pin=true stores the blocks but records no pin (spec §4.1).
func TestAddNoPin(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	dir := t.TempDir()
	writeTree(t, dir, tree{"draft.txt": "not pinned\n"})
	want := k.add(t, dir, nil, "draft.txt")

	params := api.DefaultAddParams()
	params.NoPin = true
	outs := add(t, c, params, filepath.Join(dir, "draft.txt"))
	checkAgainstKubo(t, k, outs, want)

	rootCid := mustCid(t, root(want))
	_, err := c.Allocation(t.Context(), rootCid)
	wantAPIError(t, "Allocation of a no-pin add", err, 404)
	gpi, err := c.Status(t.Context(), rootCid, false)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st := statusOf(t, gpi, self); st.Status != api.TrackerStatusUnpinned {
		t.Errorf("status of a no-pin add is %s, want unpinned", st.Status)
	}
}

// TestAddProgress: progress=true adds objects with cid null and a byte
// count; the last of them carries the file length, and the root is still
// the last object (spec §4.4).
func TestAddProgress(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)

	const size = 1<<20 + 12345
	dir := t.TempDir()
	writeTree(t, dir, tree{"big.bin": string(randBytes("progress", size))})
	want := k.add(t, dir, nil, "big.bin")

	params := api.DefaultAddParams()
	params.Progress = true
	outs := add(t, c, params, filepath.Join(dir, "big.bin"))
	checkAgainstKubo(t, k, outs, want)

	var last uint64
	n := 0
	for _, o := range outs {
		if !o.Cid.Defined() {
			n++
			if o.Bytes < last {
				t.Errorf("progress went backwards: %d after %d", o.Bytes, last)
			}
			last = o.Bytes
		}
	}
	if n < 2 {
		t.Errorf("got %d progress objects for a %d-byte file, want one per 256 KiB and one at the end", n, size)
	}
	if last != size {
		t.Errorf("last progress object says %d bytes, the file has %d", last, size)
	}
}

// TestAddMultiFile: the same tree built in memory (boxo files) and sent
// with AddMultiFile gives kubo's CIDs for the tree written to disk.
func TestAddMultiFile(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)

	big := randBytes("multifile", 700<<10)
	dir := t.TempDir()
	writeTree(t, dir, tree{
		"album/cover.jpg":         string(big),
		"album/notes/readme.md":   "# notes\n",
		"album/notes/credits.txt": "everyone\n",
		"album/empty/":            "",
	})
	want := k.add(t, dir, []string{"-r"}, "album")

	mem := files.NewSliceDirectory([]files.DirEntry{
		files.FileEntry("album", files.NewMapDirectory(map[string]files.Node{
			"cover.jpg": files.NewBytesFile(big),
			"notes": files.NewMapDirectory(map[string]files.Node{
				"readme.md":   files.NewBytesFile([]byte("# notes\n")),
				"credits.txt": files.NewBytesFile([]byte("everyone\n")),
			}),
			"empty": files.NewMapDirectory(map[string]files.Node{}),
		})),
	})
	params := api.DefaultAddParams()
	outs, err := collect(func(out chan<- api.AddedOutput) error {
		return c.AddMultiFile(t.Context(), files.NewMultiFileReader(mem, true, false), params, out)
	})
	if err != nil {
		t.Fatalf("AddMultiFile: %v", err)
	}
	checkAgainstKubo(t, k, outs, want)
}

// TestAddMultiFileCAR: a CAR that kubo exported, sent with format=car, is
// imported as is: one object with the CAR's root and the total block bytes
// (spec §4.5), and the root is pinned.
func TestAddMultiFileCAR(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	dir := t.TempDir()
	writeTree(t, dir, tree{"data.bin": string(randBytes("car", 600<<10))})
	rootCid := root(k.add(t, dir, []string{"--cid-version=1"}, "data.bin"))
	car := k.dagExport(t, rootCid)

	params := api.DefaultAddParams()
	params.Format = "car"
	body := files.NewSliceDirectory([]files.DirEntry{files.FileEntry("data.car", files.NewBytesFile(car))})
	outs, err := collect(func(out chan<- api.AddedOutput) error {
		return c.AddMultiFile(t.Context(), files.NewMultiFileReader(body, true, false), params, out)
	})
	if err != nil {
		t.Fatalf("AddMultiFile(format=car): %v", err)
	}
	if len(outs) != 1 {
		t.Fatalf("got %d objects, want exactly one: %+v", len(outs), outs)
	}
	if outs[0].Cid.String() != rootCid || outs[0].Name != "data.car" {
		t.Errorf("got name %q cid %s, want \"data.car\" %s", outs[0].Name, outs[0].Cid, rootCid)
	}
	if wb := k.dagBytes(t, rootCid); outs[0].Bytes != wb {
		t.Errorf("bytes %d, kubo counts %d bytes of blocks", outs[0].Bytes, wb)
	}
	gpi, err := c.Status(t.Context(), mustCid(t, rootCid), false)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st := statusOf(t, gpi, self); st.Status != api.TrackerStatusPinned {
		t.Errorf("status of the imported CAR root is %s (%q), want pinned", st.Status, st.Error)
	}
}
