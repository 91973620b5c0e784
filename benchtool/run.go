package benchtool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// Defaults of a Config's zero fields.
const (
	DefaultRepeat      = 3
	DefaultConcurrency = 1
	// DefaultTimeout bounds one add, from the request to the end of its
	// response: a 1 GiB add at 10 MB/s takes under two minutes.
	DefaultTimeout = 10 * time.Minute
)

// Config is one benchmark. The zero value of every field but Targets works.
type Config struct {
	// Targets are measured in this order within every round.
	Targets []Target
	// Dataset is the content of each add; zero fields take its defaults.
	Dataset Dataset
	// Options are the add options, sent as query parameters (cid-version,
	// raw-leaves, chunker, profile, …) to cluster and kubo adds; for a
	// CAR they decide how it is built, and cluster targets get them too.
	// stream-channels is always true.
	Options url.Values
	// Seed is the base seed of the content; default 0.
	Seed uint64
	// Repeat is the number of rounds; default 3 (0 means the default).
	Repeat int
	// Concurrency is the number of adds in flight on a target in a round,
	// each with its own content; default 1.
	Concurrency int
	// Timeout bounds each add; default DefaultTimeout.
	Timeout time.Duration
	// Baseline names the target the ratios are relative to; default the
	// last one.
	Baseline string
	// Insecure skips TLS certificate verification.
	Insecure bool
	// Progress, if set, receives a live progress line ("\r"-rewritten)
	// about four times a second; nil means none.
	Progress io.Writer
}

func (c *Config) normalize() error {
	if len(c.Targets) == 0 {
		return errors.New("cannot run a benchmark without targets")
	}
	seen := map[string]bool{}
	for i := range c.Targets {
		t := &c.Targets[i]
		if seen[t.Name] {
			return fmt.Errorf("cannot use target name %q twice: name them NAME=KIND:URL", t.Name)
		}
		seen[t.Name] = true
		if _, err := t.base(); err != nil {
			return fmt.Errorf("cannot use target %s: %w", t.Name, err)
		}
	}
	if c.Baseline == "" {
		c.Baseline = c.Targets[len(c.Targets)-1].Name
	} else if !seen[c.Baseline] {
		return fmt.Errorf("cannot use baseline %q: no such target", c.Baseline)
	}
	if c.Repeat == 0 {
		c.Repeat = DefaultRepeat
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Repeat < 0 || c.Concurrency < 0 {
		return errors.New("cannot use a negative repeat count or concurrency")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Options == nil {
		c.Options = url.Values{}
	}
	return c.Dataset.Normalize()
}

// Run measures every target and returns the report. The error is for a
// benchmark that could not run (bad configuration, a CAR that cannot be
// built, ctx cancelled); failed adds are in the report (Report.Err).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	ds := &cfg.Dataset
	var uo *unixfs.Options
	var pool *ingest.HashPool
	if ds.CAR {
		var err error
		if uo, err = unixfsOptions(cfg.Options); err != nil {
			return nil, err
		}
		pool = ingest.NewHashPool(0)
		defer pool.Stop()
	}
	g := newContent(cfg.Seed)
	hc := newHTTPClient(cfg.Insecure, cfg.Concurrency)
	defer hc.CloseIdleConnections()

	rep := newReport(&cfg)
	var sent atomic.Int64
	if cfg.Progress != nil {
		stop := startProgress(cfg.Progress, &sent, ds.Bytes()*int64(cfg.Repeat*cfg.Concurrency*len(cfg.Targets)), rep)
		defer stop()
	}
	for round := range cfg.Repeat {
		runs := make([]*RunReport, cfg.Concurrency)
		for slot := range runs {
			idx := round*cfg.Concurrency + slot
			runs[slot] = &RunReport{Round: round, Slot: slot, Run: idx, Seed: RunSeed(cfg.Seed, idx)}
			if ds.CAR {
				root, err := carRoot(ctx, ds, g, runs[slot].Seed, uo, pool)
				if err != nil {
					return nil, err
				}
				runs[slot].carRoot = root
			}
		}
		for ti := range cfg.Targets {
			t := &cfg.Targets[ti]
			rep.setCurrent(t.Name, round)
			results := make([]AddResult, cfg.Concurrency)
			start := time.Now()
			var wg sync.WaitGroup
			for slot := range runs {
				wg.Go(func() {
					results[slot] = addOnce(ctx, hc, &cfg, t, g, uo, pool, runs[slot], &sent)
				})
			}
			wg.Wait()
			rep.addRound(ti, round, time.Since(start).Seconds(), results)
			for slot, r := range results {
				runs[slot].Results = append(runs[slot].Results, r)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		for _, r := range runs {
			rep.addRun(r)
		}
	}
	rep.finish()
	return rep, nil
}

// addOnce uploads the content of run to t.
func addOnce(ctx context.Context, hc *http.Client, cfg *Config, t *Target, g *content, uo *unixfs.Options, pool *ingest.HashPool, run *RunReport, sent *atomic.Int64) AddResult {
	res := AddResult{Target: t.Name}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	endpoint, err := t.endpoint(cfg.Options, cfg.Dataset.CAR)
	if err != nil {
		res.Err, res.Error = err, err.Error()
		return res
	}
	start := time.Now()
	var root string
	if cfg.Dataset.CAR {
		root, err = postCAR(ctx, hc, t, endpoint, &cfg.Dataset, g, uo, pool, run, sent)
	} else {
		body := newFilesBody(&cfg.Dataset, g, run.Seed, sent)
		root, err = post(ctx, hc, t, endpoint, body.ContentType(), body)
	}
	res.Seconds = time.Since(start).Seconds()
	if err == nil {
		if _, perr := cid.Decode(root); perr != nil {
			err = fmt.Errorf("cannot decode root %q: %w", root, perr)
		}
	}
	if err != nil {
		res.Err, res.Error = err, err.Error()
		return res
	}
	res.Root = root
	return res
}

// postCAR streams the CAR of run through a pipe into the request.
func postCAR(ctx context.Context, hc *http.Client, t *Target, endpoint string, ds *Dataset, g *content, uo *unixfs.Options, pool *ingest.HashPool, run *RunReport, sent *atomic.Int64) (string, error) {
	pr, pw := io.Pipe()
	boundary := fmt.Sprintf("ingestd-bench-car-%x", run.Seed)
	done := make(chan error, 1)
	go func() {
		err := carBody(ctx, pw, boundary, ds, g, run.Seed, uo, pool, run.carRoot, sent)
		pw.CloseWithError(err)
		done <- err
	}()
	root, err := post(ctx, hc, t, endpoint, "multipart/form-data; boundary="+boundary, pr)
	// The transport may return before it has read the whole body (an early
	// error answer): stop the writer and wait for it.
	pr.CloseWithError(errAddDone)
	if werr := <-done; werr != nil && !errors.Is(werr, errAddDone) && err == nil {
		err = werr
	}
	return root, err
}

var errAddDone = errors.New("benchtool: the add has ended")
