package kuborpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
)

// PinAdd pins k on the daemon (pin/add?arg=k&recursive=<recursive>
// &progress=true, with &name=<name> if name is not empty; spec §7.3) and
// follows the progress kubo reports while it fetches the DAG. Like IPFS
// Cluster, it cancels the call with ErrStalled when the fetched-node count
// has not grown for stall (0 means no stall timer: only ctx bounds the
// call). It succeeds only when kubo's final {"Pins"} names k (compared by
// multihash: kubo may answer another CID version); an answer naming other
// CIDs, or one that cannot be decoded, is a permanent error.
func (c *Client) PinAdd(ctx context.Context, k cid.Cid, recursive bool, name string, stall time.Duration) error {
	if err := c.pinAdd(ctx, k, recursive, name, stall); err != nil {
		return fmt.Errorf("cannot pin/add %s on %s: %w", k, c.base, err)
	}
	return nil
}

func (c *Client) pinAdd(ctx context.Context, k cid.Cid, recursive bool, name string, stall time.Duration) error {
	args := url.Values{"arg": {k.String()}, "recursive": {strconv.FormatBool(recursive)}, "progress": {"true"}}
	if name != "" {
		args.Set("name", name)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A nil timer means no stall timeout; reset is then a no-op.
	reset := func() {}
	if stall > 0 {
		t := time.AfterFunc(stall, func() {
			cancel(fmt.Errorf("%w: pin progress did not grow for %v", ErrStalled, stall))
		})
		defer t.Stop()
		reset = func() { t.Reset(stall) }
	}

	// net/http fails a request whose context ended with the context's
	// cause, so a stall comes back as ErrStalled (TestPinAddStall).
	resp, err := c.Post(ctx, "pin/add", args, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := NewLineReader(resp.Body)
	progress := -1
	for {
		line, err := r.Next()
		if err == io.EOF {
			if err := streamError(resp); err != nil {
				return err
			}
			return errors.New("pin/add ended without reporting the pin")
		}
		if err != nil {
			return err
		}
		var ev struct {
			Progress *int
			Pins     []string
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return Permanent(fmt.Errorf("cannot decode pin/add answer %.200q: %w", line, err))
		}
		if ev.Progress != nil && *ev.Progress > progress {
			progress = *ev.Progress
			reset()
		}
		for _, s := range ev.Pins {
			if pc, err := cid.Decode(s); err == nil && bytes.Equal(pc.Hash(), k.Hash()) {
				return nil
			}
		}
		if ev.Pins != nil {
			return Permanent(fmt.Errorf("pin/add reported pins %v, not %s", ev.Pins, k))
		}
	}
}

// PinRm removes the recursive pin of k (pin/rm?arg=k&recursive=true). An
// error saying that k is "not pinned" (kubo: "not pinned or pinned
// indirectly") is success, as in IPFS Cluster: the pin is gone either way.
func (c *Client) PinRm(ctx context.Context, k cid.Cid) error {
	err := c.call(ctx, "pin/rm", url.Values{"arg": {k.String()}, "recursive": {"true"}}, nil)
	if msg, ok := kuboMessage(err); ok && strings.Contains(msg, "not pinned") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot pin/rm %s on %s: %w", k, c.base, err)
	}
	return nil
}

// pinLsEntry is one object of a streamed pin/ls answer.
type pinLsEntry struct {
	Cid  string
	Type string
}

// PinLs lists the daemon's pins of type typ ("recursive" or "direct"; kubo
// also knows "indirect" and "all") with pin/ls?stream=true&type=<typ>,
// calling fn for each as kubo streams them, so the pinset is never held
// whole. An error from fn stops the listing and is returned unwrapped.
func (c *Client) PinLs(ctx context.Context, typ string, fn func(k cid.Cid, typ string) error) error {
	var fnErr error
	err := c.pinLs(ctx, url.Values{"stream": {"true"}, "type": {typ}}, func(e pinLsEntry) error {
		k, err := cid.Decode(e.Cid)
		if err != nil {
			return Permanent(fmt.Errorf("cannot decode pin/ls entry %q: %w", e.Cid, err))
		}
		fnErr = fn(k, e.Type)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("cannot pin/ls type %s on %s: %w", typ, c.base, err)
	}
	return nil
}

// PinLsCid returns how k is pinned (pin/ls?stream=true&arg=k&type=all):
// "recursive", "direct" or "indirect" (kubo says "indirect through
// <root>"; the root is dropped), or "" with a nil error when kubo says
// that k is not pinned (an error message ending in "not pinned", e.g.
// "path '<cid>' is not pinned").
func (c *Client) PinLsCid(ctx context.Context, k cid.Cid) (string, error) {
	var typ string
	err := c.pinLs(ctx, url.Values{"stream": {"true"}, "arg": {k.String()}, "type": {"all"}}, func(e pinLsEntry) error {
		if typ == "" {
			typ, _, _ = strings.Cut(e.Type, " ")
		}
		return nil
	})
	if msg, ok := kuboMessage(err); ok && strings.HasSuffix(strings.TrimSpace(msg), "not pinned") {
		return "", nil
	}
	if err == nil && typ == "" {
		err = errors.New("pin/ls answered no pin and no error")
	}
	if err != nil {
		return "", fmt.Errorf("cannot pin/ls %s on %s: %w", k, c.base, err)
	}
	return typ, nil
}

// pinLs posts a streaming pin/ls and calls fn for each entry; fn's error
// stops it and is returned as is.
func (c *Client) pinLs(ctx context.Context, args url.Values, fn func(pinLsEntry) error) error {
	resp, err := c.Post(ctx, "pin/ls", args, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := NewLineReader(resp.Body)
	for {
		line, err := r.Next()
		if err == io.EOF {
			return streamError(resp)
		}
		if err != nil {
			return err
		}
		var e pinLsEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return Permanent(fmt.Errorf("cannot decode pin/ls answer %.200q: %w", line, err))
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// PinUpdate moves a recursive pin from one root to another, keeping the
// old pin (pin/update?arg=from&arg=to&unpin=false): kubo fetches only the
// blocks that differ.
func (c *Client) PinUpdate(ctx context.Context, from, to cid.Cid) error {
	err := c.call(ctx, "pin/update", url.Values{"arg": {from.String(), to.String()}, "unpin": {"false"}}, nil)
	if err != nil {
		return fmt.Errorf("cannot pin/update %s to %s on %s: %w", from, to, c.base, err)
	}
	return nil
}
