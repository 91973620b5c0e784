package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ingestd/ingestd/ingest/car"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
)

// runVerify is `ingestd verify [--data DIR] [--config FILE] [--pins=false]`:
// it checks the embedded store of a stopped ingestd and prints one line per
// problem on stdout, then a summary:
//
//	corrupt CID segment N offset N length N: REASON  (bytes that are not the block's)
//	missing CID segment N offset N length N: REASON  (indexed, but the log lacks the bytes)
//	incomplete pin CID "NAME": REASON                (a block of a pinned DAG missing or unreadable)
//
// Every indexed block is read and re-hashed (localstore.Store.Verify); then
// the DAG of every pin is walked (car.CheckStored), unless --pins=false:
// with kubo peers (--peer), pinned DAGs live on the peers, not here. It
// returns an error, and ingestd exits 1, if it found any problem or could
// not check; nothing is repaired.
//
// The data directory is found as the daemon finds it: --data, else
// $INGESTD_DATA, else the "data" key of the --config file ($INGESTD_CONFIG),
// else ~/.ingestd. The store must not be in use (pebble locks it); opening
// it does what the daemon's start does (crash recovery: the unacknowledged
// tail forgotten, segments left empty by a compaction deleted).
func runVerify(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingestd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", getenv("INGESTD_CONFIG"), "JSON config file of the daemon; only its \"data\" is read (env INGESTD_CONFIG)")
	data := fs.String("data", "", "data directory (env INGESTD_DATA; default ~/.ingestd)")
	pins := fs.Bool("pins", true, "also check that the DAG of every pin is complete (turn off with kubo peers: their pins are not in the embedded store)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	dir, err := verifyDataDir(*data, *cfgFile, getenv)
	if err != nil {
		return err
	}
	storeDir := filepath.Join(dir, "store")
	if _, err := os.Stat(storeDir); err != nil {
		return fmt.Errorf("cannot verify: no store in %s: %w", dir, err)
	}
	store, err := localstore.Open(storeDir, localstore.Options{})
	if err != nil {
		return fmt.Errorf("cannot open store (verify needs it to itself: stop ingestd first): %w", err)
	}
	defer store.Close()

	ctx := context.Background()
	st, err := store.Verify(ctx, func(p localstore.Problem) {
		kind := "corrupt"
		if errors.Is(p.Err, localstore.ErrMissing) {
			kind = "missing"
		}
		fmt.Fprintf(stdout, "%s %s segment %d offset %d length %d: %v\n", kind, p.Cid, p.Segment, p.Offset, p.Length, p.Err)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checked %d blocks (%.1f MiB): %d corrupt, %d missing\n", st.Blocks, float64(st.Bytes)/(1<<20), st.Corrupt, st.Missing)
	var nPins, incomplete int
	if *pins {
		ps := pinner.NewStore(store.Datastore(), pinner.StoreOptions{})
		err := ps.List(ctx, func(p pinner.Pin) error {
			nPins++
			if err := car.CheckStored(ctx, p.Cid.Cid, store.Get, p.Mode != pinner.ModeDirect); err != nil {
				incomplete++
				fmt.Fprintf(stdout, "incomplete pin %s %q: %v\n", p.Cid, p.Name, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cannot check pins: %w", err)
		}
		fmt.Fprintf(stdout, "checked %d pins: %d incomplete\n", nPins, incomplete)
	}
	if st.Corrupt+st.Missing+incomplete > 0 {
		return fmt.Errorf("store %s: %d corrupt blocks, %d missing blocks, %d incomplete pins", storeDir, st.Corrupt, st.Missing, incomplete)
	}
	return nil
}

// verifyDataDir resolves the data directory as loadConfig does, reading
// only the "data" key of the config file.
func verifyDataDir(flagData, cfgFile string, getenv func(string) string) (string, error) {
	if flagData != "" {
		return flagData, nil
	}
	if v := getenv("INGESTD_DATA"); v != "" {
		return v, nil
	}
	if cfgFile != "" {
		b, err := os.ReadFile(cfgFile)
		if err != nil {
			return "", fmt.Errorf("cannot read config file: %w", err)
		}
		var c struct {
			Data string `json:"data"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return "", fmt.Errorf("cannot parse config file %s: %w", cfgFile, err)
		}
		if c.Data != "" {
			return c.Data, nil
		}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the data directory (no --data, no INGESTD_DATA): %w", err)
	}
	return filepath.Join(home, ".ingestd"), nil
}
