package unixfs_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// sliceEntries yields files (path "name") and directories (path "name/").
type sliceEntries []string

func (s *sliceEntries) Next() (*ingestmp.Entry, error) {
	if len(*s) == 0 {
		return nil, io.EOF
	}
	p := (*s)[0]
	*s = (*s)[1:]
	if dir, ok := strings.CutSuffix(p, "/"); ok {
		return &ingestmp.Entry{Path: dir, Kind: ingestmp.Dir}, nil
	}
	return &ingestmp.Entry{Path: p, Kind: ingestmp.File, Body: strings.NewReader(p)}, nil
}

// TestImportUnwrappedEntries checks that without wrap every top-level entry
// is finished before the next one starts, as kubo (one add per path) and
// IPFS Cluster (one AddAllAndPin per entry) do, so that the last output is
// the last root; and that an entry that comes back to a finished directory
// is rejected.
func TestImportUnwrappedEntries(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	f := func(entries []string, wantNames []string, wantErr error) {
		t.Helper()
		o := unixfs.DefaultOptions()
		if err := o.Resolve(); err != nil {
			t.Fatal(err)
		}
		se := sliceEntries(entries)
		var names []string
		roots, err := unixfs.Import(context.Background(), &se, &o, pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
			names = append(names, out.Name)
			return nil
		})
		if !errors.Is(err, wantErr) {
			t.Fatalf("Import(%q) error = %v, want %v", entries, err, wantErr)
		}
		if err != nil {
			return
		}
		if !slices.Equal(names, wantNames) {
			t.Errorf("Import(%q) outputs %q, want %q", entries, names, wantNames)
		}
		if len(roots) != 2 {
			t.Fatalf("Import(%q) = %d roots, want 2", entries, len(roots))
		}
	}
	f([]string{"d/", "d/a", "d/s/", "d/s/b", "f"}, []string{"d/a", "d/s/b", "d/s", "d", "f"}, nil)
	f([]string{"f", "d/", "d/a"}, []string{"f", "d/a", "d"}, nil)
	f([]string{"d/a", "e/b"}, []string{"d/a", "d", "e/b", "e"}, nil) // implicit directories
	f([]string{"d/a", "f", "d/b"}, nil, unixfs.ErrBadEntry)
}
