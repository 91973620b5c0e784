package car_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
	"github.com/ingestd/ingestd/internal/kubotest"
)

// identityCAR returns an identity CID of n bytes and CARs that hold it as
// a section, as the root, and as a link of the root.
func identityCARs(n int) (c cid.Cid, section, root, link []byte) {
	data := bytes.Repeat([]byte{'i'}, n)
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum(data)
	if err != nil {
		panic(err)
	}
	dir := dag.NodeWithData(ft.FolderPBData())
	if err := dir.AddRawLink("i", &ipld.Link{Cid: c, Size: uint64(n)}); err != nil {
		panic(err)
	}
	dirBlock := carBlock{dir.Cid(), dir.RawData()}
	section = carV1([]cid.Cid{dir.Cid()}, []carBlock{{c, data}, dirBlock})
	root = carV1([]cid.Cid{c}, nil)
	link = carV1([]cid.Cid{dir.Cid()}, []carBlock{dirBlock})
	return c, section, root, link
}

// TestIdentityLimitMatchesKubo checks, with kubo as the oracle, that a CAR
// is refused exactly when `ipfs dag import --pin-roots` fails on it: at
// kubo's identity limit and one byte over it, as a section, a root and a
// link.
func TestIdentityLimitMatchesKubo(t *testing.T) {
	kubotest.Binary(t)
	t.Parallel()
	repo := kubotest.NewRepo(t)
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	dir := t.TempDir()
	for _, n := range []int{ingest.MaxIdentityDigestSize, ingest.MaxIdentityDigestSize + 1} {
		_, section, root, link := identityCARs(n)
		for kind, data := range map[string][]byte{"section": section, "root": root, "link": link} {
			path := filepath.Join(dir, kind+".car")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, kuboErr := repo.RunErr(nil, "dag", "import", "--pin-roots=true", path)
			_, err := car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{})
			switch {
			case kuboErr == nil && err != nil:
				t.Errorf("%d-byte identity CID as a %s: kubo pins it, Import refuses it: %v", n, kind, err)
			case kuboErr != nil && !errors.Is(err, ingest.ErrCIDRefused):
				t.Errorf("%d-byte identity CID as a %s: kubo refuses it (%v), Import error = %v", n, kind, kuboErr, err)
			case kuboErr != nil && !errors.Is(err, car.ErrUnsupportedHash):
				t.Errorf("%d-byte identity CID as a %s: error %v does not wrap ErrUnsupportedHash", n, kind, err)
			}
		}
	}
}

// TestIdentityLimitStored checks the CIDs the completeness check meets
// outside the CAR: a link of a block read from the store, and the root
// the embedded pinner checks with CheckStored.
func TestIdentityLimitStored(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	over, _, _, link := identityCARs(ingest.MaxIdentityDigestSize + 1)

	// The root of link.car is in the store, not in a CAR that names it.
	_, blocks, _ := goCarBlocks(t, link)
	get := func(_ context.Context, c cid.Cid) ([]byte, error) {
		if b, ok := blocks[c.KeyString()]; ok {
			return b, nil
		}
		return nil, ipld.ErrNotFound{Cid: c}
	}
	var dirCid cid.Cid
	for k := range blocks {
		dirCid = cid.MustParse([]byte(k))
	}
	parent := dag.NodeWithData(ft.FolderPBData())
	if err := parent.AddRawLink("d", &ipld.Link{Cid: dirCid}); err != nil {
		t.Fatal(err)
	}
	data := carV1([]cid.Cid{parent.Cid()}, []carBlock{{parent.Cid(), parent.RawData()}})
	if _, err := car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{}, car.Get(get)); !errors.Is(err, ingest.ErrCIDRefused) {
		t.Errorf("a stored block links to a %d-byte identity CID: Import error = %v, want ErrCIDRefused", over.ByteLen(), err)
	}
	for _, recursive := range []bool{false, true} {
		if err := car.CheckStored(context.Background(), over, get, recursive); !errors.Is(err, ingest.ErrCIDRefused) || !errors.Is(err, car.ErrUnsupportedHash) {
			t.Errorf("CheckStored(%d-byte identity root, recursive %v) = %v, want ErrCIDRefused and ErrUnsupportedHash", over.ByteLen(), recursive, err)
		}
		if err := car.CheckStored(context.Background(), dirCid, get, recursive); recursive != errors.Is(err, ingest.ErrCIDRefused) {
			t.Errorf("CheckStored(a block linking to a %d-byte identity CID, recursive %v) = %v", over.ByteLen(), recursive, err)
		}
	}
}
