package ingest_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ipfs/boxo/verifcid"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

func sum(t *testing.T, codec, hash uint64, length int, data []byte) cid.Cid {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: codec, MhType: hash, MhLength: length}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCheckCID checks CheckCID against kubo's rules (boxo/verifcid), at
// the identity limit and on both sides of it.
func TestCheckCID(t *testing.T) {
	identity := func(n int) cid.Cid { return sum(t, cid.Raw, mh.IDENTITY, -1, bytes.Repeat([]byte{'i'}, n)) }
	f := func(name string, c cid.Cid, want error) {
		t.Helper()
		err := ingest.CheckCID(c)
		if !errors.Is(err, want) {
			t.Fatalf("%s: CheckCID = %v, want %v", name, err, want)
		}
		if want != nil && !errors.Is(err, ingest.ErrCIDRefused) {
			t.Fatalf("%s: CheckCID = %v, want it to wrap ErrCIDRefused", name, err)
		}
	}
	f("sha2-256 v1", sum(t, cid.Raw, mh.SHA2_256, -1, []byte("x")), nil)
	f("sha2-256 v0", cid.NewCidV0(sum(t, cid.DagProtobuf, mh.SHA2_256, -1, []byte("x")).Hash()), nil)
	f("identity empty", identity(0), nil)
	f("identity at the limit", identity(ingest.MaxIdentityDigestSize), nil)
	f("identity over the limit", identity(ingest.MaxIdentityDigestSize+1), verifcid.ErrDigestTooLarge)
	f("identity of 1 MiB", identity(1<<20), verifcid.ErrDigestTooLarge)
	f("md5", sum(t, cid.Raw, mh.MD5, -1, []byte("x")), verifcid.ErrPossiblyInsecureHashFunction)
	f("truncated sha2-256", sum(t, cid.Raw, mh.SHA2_256, 16, []byte("x")), verifcid.ErrDigestTooSmall)
	f("undefined", cid.Undef, ingest.ErrCIDRefused)
}

// TestShortCID checks that a long CID is shown as a prefix of its own
// string (go-cid's encoding is the reference) and its length.
func TestShortCID(t *testing.T) {
	small := sum(t, cid.Raw, mh.SHA2_256, -1, []byte("x"))
	if got := ingest.ShortCID(small); got != small.String() {
		t.Fatalf("ShortCID(%s) = %s", small, got)
	}
	big := sum(t, cid.Raw, mh.IDENTITY, -1, bytes.Repeat([]byte{'i'}, 1<<20))
	got := ingest.ShortCID(big)
	if len(got) > 100 {
		t.Fatalf("ShortCID of a %d-byte CID is %d bytes long", big.ByteLen(), len(got))
	}
	prefix, _, ok := strings.Cut(got, "…")
	if !ok || len(prefix) < 60 || !strings.HasPrefix(big.String(), prefix) {
		t.Fatalf("ShortCID = %q, want a prefix of the CID's string", got)
	}
}
