package blockfanout

import (
	"context"
	"fmt"
	"time"
)

// watch is the session's watchdog: it cancels the request of every peer
// that has owed an acknowledgement for StallTimeout (then retried), and
// drops peers that lag (see lagging).
func (s *Session) watch() {
	cfg := &s.f.cfg
	stall := cfg.stallTimeout
	t := time.NewTicker(min(max(min(stall, cfg.lagTimeout)/8, 10*time.Millisecond), time.Second))
	defer t.Stop()
	type stalled struct {
		cancel context.CancelCauseFunc
		err    error
	}
	for {
		select {
		case <-s.streamsDone:
			return
		case now := <-t.C:
			var cancels []stalled
			s.mu.Lock()
			for _, st := range s.streams {
				if st.err != nil || !st.owed() || now.Sub(st.since) < stall {
					continue
				}
				// Every open request ends with the stall as its cause; the
				// first to return counts the failure and retries (stream).
				err := fmt.Errorf("%w: no acknowledgement for %v (%d of %d blocks acknowledged)", ErrStalled, stall, st.acked, st.next)
				for _, r := range st.open {
					if r.cancel != nil {
						cancels = append(cancels, stalled{r.cancel, err})
						r.cancel = nil
					}
				}
			}
			lag := s.laggingLocked(now)
			s.mu.Unlock()
			for _, c := range cancels {
				c.cancel(c.err)
			}
			for _, st := range lag {
				st.dropLagging()
			}
		}
	}
}

// laggingLocked returns the live peers to drop because the quorum does not
// need them (issue 11: a SIGSTOPped peer held every add for StallTimeout
// times its retries): a peer lags when it holds up the session, i.e. a Put
// waits for room and the peer is the furthest behind, or Close waits for
// it, and it owes an acknowledgement with no progress for LagTimeout.
// They are dropped only if the other live peers still make minOK.
func (s *Session) laggingLocked(now time.Time) []*stream {
	if s.err != nil || (s.waiting == 0 && !s.closing) {
		return nil
	}
	var lag []*stream
	live := 0
	for _, st := range s.streams {
		if st.err != nil {
			continue
		}
		live++
		holding := s.closing || st.acked == s.base
		if holding && st.owed() && now.Sub(st.since) >= s.f.cfg.lagTimeout {
			lag = append(lag, st)
		}
	}
	if live-len(lag) < s.minOK {
		return nil
	}
	return lag
}

// dropLagging drops st's peer for lagging and ends its requests (drop);
// its lanes then return without a retry.
func (st *stream) dropLagging() {
	s := st.s
	s.mu.Lock()
	s.stats.Lagging++
	acked, sent := st.acked, st.next
	s.mu.Unlock()
	st.drop(fmt.Errorf("%w: %w: no progress for %v while the other peers made the quorum (%d of %d blocks acknowledged)",
		ErrPeerUnavailable, ErrLagging, s.f.cfg.lagTimeout, acked, sent))
}
