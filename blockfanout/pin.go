package blockfanout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/kuborpc"
)

// Pin pins c on every peer at once, recursively or (recursive false) only
// the block itself (kubo pin/add?arg=c&recursive=…&progress=true, spec
// §7.3), with name as the
// pin name if not empty. Like IPFS Cluster, it cancels a pin whose progress
// has not grown for StallTimeout (ErrStalled); transient errors are retried
// as in a session. Result tells which peers pinned; the error is non-nil,
// wrapping ErrQuorum and naming each failed peer, unless all of them did.
func (f *Fanout) Pin(ctx context.Context, peers []*Peer, c cid.Cid, name string, recursive bool) (Result, error) {
	errs := make([]error, len(peers))
	ctx, cancel := mergeCancel(ctx, f.stopCtx)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			if down, why := f.knownDown(p); down {
				errs[i] = fmt.Errorf("cannot pin %s on peer %s: %w: %s", c, p, ErrPeerUnavailable, why)
				return
			}
			if err := f.pinOn(ctx, p, c, name, recursive); err != nil {
				errs[i] = fmt.Errorf("cannot pin %s on peer %s: %w", c, p, err)
			}
		})
	}
	wg.Wait()
	res := Result{Failed: map[string]error{}}
	var failed []string
	for i, p := range peers {
		if errs[i] == nil {
			res.OK = append(res.OK, p)
			continue
		}
		res.Failed[p.Name] = errs[i]
		failed = append(failed, errs[i].Error())
		f.recordErr(p, errs[i])
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("cannot pin %s: %w: %d of %d peers pinned; %s", c, ErrQuorum, len(res.OK), len(peers), strings.Join(failed, "; "))
	}
	return res, nil
}

// pinOn pins c on p, retrying transient errors up to MaxRetries times. A
// failure wraps ErrPeerUnavailable (and ErrStalled for a stall) unless ctx
// ended: then it is ctx's cause.
func (f *Fanout) pinOn(ctx context.Context, p *Peer, c cid.Cid, name string, recursive bool) error {
	err := kuborpc.Retry(ctx, f.cfg.maxRetries, f.cfg.stallTimeout, func() error {
		err := p.rpc.PinAdd(ctx, c, recursive, name, f.cfg.stallTimeout)
		if errors.Is(err, kuborpc.ErrStalled) {
			return fmt.Errorf("%w: %w", ErrStalled, err)
		}
		return err
	})
	if err == nil || ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPeerUnavailable, err)
}
