package ingest

import (
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/boxo/verifcid"
	cid "github.com/ipfs/go-cid"
)

// MaxIdentityDigestSize is the most bytes an identity CID may carry
// (boxo/verifcid.DefaultMaxIdentityDigestSize, 128 in kubo 0.42). kubo
// refuses a longer one wherever it meets it: `ipfs add --hash=identity`
// fails on the first block over it (the root directory of the add
// included), `dag import` reports a pin error for such a root or link,
// and `pin add` refuses it. A CID that carries a whole file would also be
// as long as the file in every listing and URL.
const MaxIdentityDigestSize = verifcid.DefaultMaxIdentityDigestSize

// ErrCIDRefused is wrapped by every error for a CID that kubo refuses
// (CheckCID); the error also wraps verifcid's reason.
var ErrCIDRefused = errors.New("ingest: CID refused")

// CheckCID returns nil if kubo accepts c, and otherwise an error wrapping
// ErrCIDRefused and boxo/verifcid's reason: a hash function kubo does not
// allow (md5, murmur3...), a digest shorter than 20 bytes or longer than
// 128, or an identity CID carrying more than MaxIdentityDigestSize bytes.
// It is the check kubo's block service makes on every block it stores or
// fetches; the importers make it on every CID they accept, and the REST
// layer on the CID of a pin request.
func CheckCID(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("cannot accept an undefined CID: %w", ErrCIDRefused)
	}
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
		return fmt.Errorf("cannot accept CID %s: %w: %w", ShortCID(c), err, ErrCIDRefused)
	}
	return nil
}

// shortCIDBytes is how much of a long CID ShortCID shows: 40 bytes are
// 64 base32 characters, an exact prefix of the CID's own string.
const shortCIDBytes = 40

var base32Lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ShortCID is c.String() for a CID of up to 64 bytes; a longer one (an
// identity CID that carries data) is shown as the start of its string and
// its length, so that an error message about a 20 MB CID is not 32 MB long.
func ShortCID(c cid.Cid) string {
	if c.ByteLen() <= 64 || c.Version() == 0 {
		return c.String()
	}
	// A CIDv1 string is multibase base32: "b" and the lowercase,
	// unpadded encoding of its bytes; KeyString does not copy them.
	var b strings.Builder
	b.WriteByte('b')
	b.WriteString(base32Lower.EncodeToString([]byte(c.KeyString()[:shortCIDBytes])))
	fmt.Fprintf(&b, "… (a %d-byte CID)", c.ByteLen())
	return b.String()
}
