package blockfanout

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ingestd/ingestd/kuborpc"
)

// importArgs is the query of every dag/import request:
//
//   - pin-roots=false: the segment's CAR names no root (the root of an add
//     is known only at its end); Fanout.Pin pins it afterwards.
//   - stats=true: the only answer is {"Stats":{"BlockCount","BlockBytesCount"}},
//     which is checked against what the request sent (the acknowledgement).
//   - allow-big-block=true: as block/put, the caller bounds block sizes.
//   - fast-provide-root=false, fast-provide-dag=false: nothing to announce
//     for a segment without roots (kubo v0.42.0 would walk the roots it
//     names); kubos that do not know these options ignore them.
var importArgs = url.Values{
	"pin-roots":         {"false"},
	"stats":             {"true"},
	"allow-big-block":   {"true"},
	"fast-provide-root": {"false"},
	"fast-provide-dag":  {"false"},
}

// errNoImport: the peer refused dag/import (see refusesImport) or answered
// it without stats; its session retries at once with block/put, which the
// peer gets from then on (Peer.Wire). It does not count as a failure.
var errNoImport = errors.New("blockfanout: dag/import not available, using block/put")

// refusesImport reports an answer that says dag/import does not exist or
// is not allowed here: HTTP 403, 404 (kubo's own answer to an unknown
// command), 405 or 501, as an older kubo or a filtering proxy gives.
func refusesImport(err error) bool {
	var he *kuborpc.HTTPError
	if !errors.As(err, &he) {
		return false
	}
	switch he.Status {
	case http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return true
	}
	return false
}

// importStats is dag/import's stats answer.
type importStats struct {
	BlockCount      uint64
	BlockBytesCount uint64
}

// decodeImportLine decodes one line of a dag/import answer. With
// pin-roots=false and a CAR without roots, kubo answers only the stats; a
// Root line (a CAR that named roots) is ignored. A second Stats line is an
// error.
func decodeImportLine(line []byte, prev *importStats) (*importStats, error) {
	var out struct {
		Stats *importStats
		Root  json.RawMessage
	}
	if err := json.Unmarshal(line, &out); err != nil {
		return nil, fmt.Errorf("cannot decode dag/import answer %.200q: %w", line, err)
	}
	if out.Stats == nil {
		return prev, nil
	}
	if prev != nil {
		return nil, fmt.Errorf("cannot decode dag/import answer %.200q: a second Stats", line)
	}
	return out.Stats, nil
}

// endOfImport checks a dag/import answer that ended: kubo read the whole
// CAR, stored it (it answers after committing its batch) and counted the
// very blocks and bytes the request sent, without a stream error. Then
// every block of the request is acknowledged at once, or, if an older
// segment of the peer is still open, as soon as that one is.
func (st *stream) endOfImport(r *request, streamErr string, stats *importStats) error {
	if streamErr != "" {
		return fmt.Errorf("dag/import failed: kubo reported: %s", streamErr)
	}
	s := st.s
	s.mu.Lock()
	if r.gen != st.epoch {
		s.mu.Unlock()
		return errRequestAborted
	}
	if !r.bodyDone {
		s.mu.Unlock()
		return fmt.Errorf("dag/import answer ended before its body: %d blocks sent", r.written-r.start)
	}
	if stats == nil {
		s.mu.Unlock()
		st.peer.noImport.Store(true)
		return fmt.Errorf("%w: dag/import answered without stats", errNoImport)
	}
	n := r.written - r.start
	var size int64
	for seq := r.start; seq < r.written; seq++ {
		size += int64(len(s.at(seq).data))
	}
	if stats.BlockCount != n || stats.BlockBytesCount != uint64(size) {
		s.mu.Unlock()
		return fmt.Errorf("cannot match dag/import stats (%d blocks, %d bytes) with the request (%d blocks %s to %s, %d bytes)",
			stats.BlockCount, stats.BlockBytesCount, n, s.at(r.start).name, s.at(r.written-1).name, size)
	}
	st.peer.imported.Store(true)
	r.answered = true
	st.since = time.Now()
	if r.start != st.acked {
		// An older segment is still open: its blocks come first.
		i, _ := slices.BinarySearchFunc(st.early, r.start, func(e *request, start uint64) int { return cmp.Compare(e.start, start) })
		st.early = slices.Insert(st.early, i, r)
		s.mu.Unlock()
		s.f.cfg.metrics.PeerAcked(st.peer.Name, int(n), size)
		return nil
	}
	st.acked = r.written
	for len(st.early) > 0 && st.early[0].start == st.acked {
		st.acked = st.early[0].written
		st.early = st.early[1:]
	}
	space := s.releaseLocked()
	s.mu.Unlock()
	closeSpace(space)
	s.f.cfg.metrics.PeerAcked(st.peer.Name, int(n), size)
	return nil
}
