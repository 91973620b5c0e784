package restapi

import (
	"github.com/mr-tron/base58/base58"
	mh "github.com/multiformats/go-multihash"
)

// validPeerID reports whether s decodes as a libp2p peer ID (a base58
// multihash), which is what the Go client requires of every peer ID field.
func validPeerID(s string) bool {
	b, err := base58.Decode(s)
	if err != nil {
		return false
	}
	_, err = mh.Cast(b)
	return err == nil
}
