package kuborpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	cid "github.com/ipfs/go-cid"
)

// IDInfo is the part of kubo's id answer that ingestd uses.
type IDInfo struct {
	ID           string   // the daemon's libp2p peer ID
	Addresses    []string // its swarm multiaddrs, each ending in /p2p/<ID>
	AgentVersion string   // e.g. "kubo/0.42.0"
}

// ID asks the daemon who it is (id). An answer without an ID is an error:
// every use of ID (liveness, allocation by peer ID) needs one.
func (c *Client) ID(ctx context.Context) (IDInfo, error) {
	var info IDInfo
	err := c.call(ctx, "id", nil, &info)
	if err == nil && info.ID == "" {
		err = errors.New("id answered no ID")
	}
	if err != nil {
		return IDInfo{}, fmt.Errorf("cannot get id of %s: %w", c.base, err)
	}
	return info, nil
}

// RepoStat is the daemon's repository size and limit, in bytes.
type RepoStat struct {
	RepoSize   uint64 // bytes stored
	StorageMax uint64 // Datastore.StorageMax
}

// RepoStat asks for the repository's size (repo/stat?size-only=true, which
// does not count objects and so stays cheap on large repositories).
func (c *Client) RepoStat(ctx context.Context) (RepoStat, error) {
	var st RepoStat
	if err := c.call(ctx, "repo/stat", url.Values{"size-only": {"true"}}, &st); err != nil {
		return RepoStat{}, fmt.Errorf("cannot get repo/stat of %s: %w", c.base, err)
	}
	return st, nil
}

// RepoGC runs the daemon's garbage collector (repo/gc?stream-errors=true)
// and calls fn for each line of its answer as it streams: a removed block
// (key set, errMsg "") or an error kubo met and went on after (key
// cid.Undef, errMsg set). It returns an error if the collection could not
// run or stopped early.
func (c *Client) RepoGC(ctx context.Context, fn func(key cid.Cid, errMsg string)) error {
	if err := c.repoGC(ctx, fn); err != nil {
		return fmt.Errorf("cannot repo/gc on %s: %w", c.base, err)
	}
	return nil
}

func (c *Client) repoGC(ctx context.Context, fn func(key cid.Cid, errMsg string)) error {
	resp, err := c.Post(ctx, "repo/gc", url.Values{"stream-errors": {"true"}}, nil, "")
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
		// Key is a DAG-JSON link here, unlike the plain strings of other
		// commands (spec §7.4).
		var ev struct {
			Key *struct {
				CID string `json:"/"`
			}
			Error string
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return Permanent(fmt.Errorf("cannot decode repo/gc answer %.200q: %w", line, err))
		}
		if ev.Error != "" {
			fn(cid.Undef, ev.Error)
			continue
		}
		if ev.Key == nil {
			return Permanent(fmt.Errorf("cannot decode repo/gc answer %.200q: neither Key nor Error", line))
		}
		k, err := cid.Decode(ev.Key.CID)
		if err != nil {
			return Permanent(fmt.Errorf("cannot decode repo/gc key %q: %w", ev.Key.CID, err))
		}
		fn(k, "")
	}
}

// Resolve resolves an IPFS path (/ipfs/<cid>/a/b, /ipns/<name>...) to the
// path of the CID it names (resolve?arg=<path>&recursive=true), e.g.
// "/ipfs/<cid>".
func (c *Client) Resolve(ctx context.Context, path string) (string, error) {
	var out struct{ Path string }
	err := c.call(ctx, "resolve", url.Values{"arg": {path}, "recursive": {"true"}}, &out)
	if err == nil && out.Path == "" {
		err = errors.New("resolve answered no path")
	}
	if err != nil {
		return "", fmt.Errorf("cannot resolve %s on %s: %w", path, c.base, err)
	}
	return out.Path, nil
}

// SwarmConnect asks the daemon to connect to a peer at each of addrs
// (swarm/connect?arg=<maddr>...; each must end in /p2p/<peer ID>). kubo
// fails the whole call if it cannot connect to one of them.
func (c *Client) SwarmConnect(ctx context.Context, addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("cannot swarm/connect on %s: %w", c.base, Permanent(errors.New("no address given")))
	}
	if err := c.call(ctx, "swarm/connect", url.Values{"arg": addrs}, nil); err != nil {
		return fmt.Errorf("cannot swarm/connect %v on %s: %w", addrs, c.base, err)
	}
	return nil
}

// SwarmPeers returns the peer IDs the daemon is connected to (the "Peer"
// of each entry of swarm/peers), one per connection.
func (c *Client) SwarmPeers(ctx context.Context) ([]string, error) {
	var out struct{ Peers []struct{ Peer string } }
	if err := c.call(ctx, "swarm/peers", nil, &out); err != nil {
		return nil, fmt.Errorf("cannot get swarm/peers of %s: %w", c.base, err)
	}
	peers := make([]string, len(out.Peers))
	for i, p := range out.Peers {
		peers[i] = p.Peer
	}
	return peers, nil
}
