package kuborpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// BlockGet returns block k as the daemon holds it, without fetching it
// from the network (block/get?arg=<cid>&offline=true): a block the daemon
// does not hold is an error matching ipld.ErrNotFound. A block longer than
// maxSize bytes is an error (the answer is read no further).
func (c *Client) BlockGet(ctx context.Context, k cid.Cid, maxSize int) ([]byte, error) {
	resp, err := c.Post(ctx, "block/get", url.Values{"arg": {k.String()}, "offline": {"true"}}, nil, "")
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && isNotFoundMessage(he.Message) {
			return nil, fmt.Errorf("cannot get block %s from %s: %w", k, c.base, ipld.ErrNotFound{Cid: k})
		}
		return nil, fmt.Errorf("cannot get block %s from %s: %w", k, c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxSize)+1))
	if err == nil && len(data) > maxSize {
		err = Permanent(fmt.Errorf("block is larger than %d bytes", maxSize))
	}
	if err == nil {
		err = streamError(resp)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot get block %s from %s: %w", k, c.base, err)
	}
	return data, nil
}

// isNotFoundMessage reports whether kubo's error message says a block is
// missing: "block was not found locally (offline): ipld: could not find
// <cid>" in kubo 0.42.0.
func isNotFoundMessage(msg string) bool {
	return strings.Contains(msg, "not found") || strings.Contains(msg, "could not find")
}
