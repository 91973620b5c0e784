package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	format "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
)

// verifyFixture makes a data directory whose store holds one pinned DAG:
// a dag-pb node over three raw leaves. It returns the directory, the
// root, and the leaves' CIDs and data.
func verifyFixture(t *testing.T) (dir string, root cid.Cid, leaves []cid.Cid, data [][]byte) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	store, err := localstore.Open(filepath.Join(dir, "store"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nd := merkledag.NodeWithData([]byte{8, 1})
	for i := range 3 {
		d := make([]byte, 64<<10)
		rand.Read(d)
		h, err := mh.Sum(d, mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		c := cid.NewCidV1(cid.Raw, h)
		if err := store.Put(ctx, c, d); err != nil {
			t.Fatal(err)
		}
		if err := nd.AddRawLink(string(rune('a'+i)), &format.Link{Cid: c, Size: uint64(len(d))}); err != nil {
			t.Fatal(err)
		}
		leaves, data = append(leaves, c), append(data, d)
	}
	if err := store.Put(ctx, nd.Cid(), nd.RawData()); err != nil {
		t.Fatal(err)
	}
	pin := pinner.Pin{Cid: pinner.CID{Cid: nd.Cid()}, Name: "fixture", Mode: pinner.ModeRecursive, Type: pinner.TypePin, MaxDepth: -1}
	if err := pinner.NewStore(store.Datastore(), pinner.StoreOptions{}).Put(ctx, pin); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, nd.Cid(), leaves, data
}

// damageBlock flips a byte in the middle of data where it lies in a
// segment file of the store in dir.
func damageBlock(t *testing.T, dir string, data []byte) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "store", "blocks", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, data); i >= 0 {
			b[i+len(data)/2] ^= 1
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("block not found in any segment")
}

func TestVerifyCommand(t *testing.T) {
	dir, root, leaves, data := verifyFixture(t)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	f := func(args []string, wantErr string, want ...string) {
		t.Helper()
		var out, stderr strings.Builder
		err := runVerify(args, getenv, &out, &stderr)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Fatalf("verify %v: error %v; want %q\nstdout:\n%s\nstderr:\n%s", args, err, wantErr, out.String(), stderr.String())
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Fatalf("verify %v: output lacks %q:\n%s", args, w, out.String())
			}
		}
	}
	f([]string{"--data", dir}, "", "checked 4 blocks", "0 corrupt, 0 missing", "checked 1 pins: 0 incomplete")

	damageBlock(t, dir, data[1])
	const found = "1 corrupt blocks, 0 missing blocks, 1 incomplete pins"
	f([]string{"--data", dir}, found, "corrupt "+leaves[1].String()+" segment ", "1 corrupt, 0 missing", "incomplete pin "+root.String(), "checked 1 pins: 1 incomplete")
	f([]string{"--data", dir, "--pins=false"}, "1 corrupt blocks, 0 missing blocks, 0 incomplete pins", "corrupt "+leaves[1].String())

	// The data directory from the environment, then from a config file.
	env["INGESTD_DATA"] = dir
	f(nil, found)
	delete(env, "INGESTD_DATA")
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(`{"data": "`+dir+`", "listen": "127.0.0.1:1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f([]string{"--config", cfg}, found)

	// A pin whose DAG was never stored, in an intact store.
	dir2, _, _, _ := verifyFixture(t)
	store, err := localstore.Open(filepath.Join(dir2, "store"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	absent, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte("never stored"))
	pin := pinner.Pin{Cid: pinner.CID{Cid: absent}, Mode: pinner.ModeRecursive, Type: pinner.TypePin, MaxDepth: -1}
	if err := pinner.NewStore(store.Datastore(), pinner.StoreOptions{}).Put(context.Background(), pin); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	f([]string{"--data", dir2}, "0 corrupt blocks, 0 missing blocks, 1 incomplete pins", "incomplete pin "+absent.String(), "0 corrupt, 0 missing")

	f([]string{"--data", filepath.Join(dir, "nothing")}, "no store in")
	f([]string{"--data", dir, "extra"}, "unexpected arguments")
}
