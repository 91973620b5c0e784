package car

import "errors"

// Every error Import returns for a bad CAR wraps one of these, so that callers
// can classify it with errors.Is. The full message names what failed (section
// number, byte offset, CID, limit) and is meant to be shown to the uploader as
// it is: the REST layer sends it, alone, in the X-Stream-Error trailer.
var (
	// ErrBlockTooLarge: a section holds a block longer than MaxBlockSize.
	ErrBlockTooLarge = errors.New("car: block too large")
	// ErrHeaderTooLarge: the CARv1 header is longer than MaxHeaderSize.
	ErrHeaderTooLarge = errors.New("car: header too large")
	// ErrHashMismatch: a block's data does not hash to its CID.
	ErrHashMismatch = errors.New("car: block data does not match its CID")
	// ErrUnsupportedHash: a CID uses a hash function or digest length that
	// kubo refuses (boxo/verifcid's default allowlist: no md5, no digests
	// shorter than 20 bytes, ...), so the block could never be stored.
	ErrUnsupportedHash = errors.New("car: unsupported hash function")
	// ErrBadRoots: the header names fewer or more roots than AllowRoots permits.
	ErrBadRoots = errors.New("car: bad roots")
	// ErrMissingBlock: a block reachable from the roots is neither in the CAR
	// nor in the store (see Has).
	ErrMissingBlock = errors.New("car: missing block")
	// ErrUnsupportedCodec: a block reachable from the roots has a codec whose
	// links ingestd cannot decode, so completeness cannot be checked.
	ErrUnsupportedCodec = errors.New("car: unsupported codec")
	// ErrUnsupportedVersion: the CAR is neither version 1 nor version 2.
	ErrUnsupportedVersion = errors.New("car: unsupported CAR version")
	// ErrMalformed: the bytes are not a CAR (bad varint, bad header, section
	// shorter than its CID, bad CARv2 offsets or index, block that does not
	// decode with its own codec...). A truncated stream also wraps
	// io.ErrUnexpectedEOF.
	ErrMalformed = errors.New("car: malformed CAR")
)
