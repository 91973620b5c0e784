package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mr-tron/base58/base58"
)

// loadIdentity returns the peer ID kept in dir, creating an Ed25519 key on
// first start. The peer ID is the libp2p one (identity multihash of the
// protobuf-encoded public key, "12D3KooW…"), which the cluster clients
// require of every peer ID field. Only the ID is used for now: ingestd does
// not speak libp2p.
func loadIdentity(dir string) (string, error) {
	path := filepath.Join(dir, "identity.key")
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		seed = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return "", fmt.Errorf("cannot create identity: %w", err)
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, seed, 0o600); err != nil {
			return "", fmt.Errorf("cannot write identity: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return "", fmt.Errorf("cannot write identity: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("cannot read identity: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return "", fmt.Errorf("cannot read identity %s: %d bytes, want %d", path, len(seed), ed25519.SeedSize)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	// PublicKey{Type: Ed25519 (1), Data: pub} in protobuf, wrapped in an
	// identity multihash (0x00, length 36).
	b := append([]byte{0x00, 36, 0x08, 0x01, 0x12, 32}, pub...)
	return base58.Encode(b), nil
}
