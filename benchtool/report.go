package benchtool

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	cid "github.com/ipfs/go-cid"
)

// Report is what a benchmark measured. Its JSON form is `ingestd bench
// --json`.
type Report struct {
	Dataset     DatasetInfo    `json:"dataset"`
	Options     string         `json:"options"` // the add options as a query string
	Seed        uint64         `json:"seed"`
	Repeat      int            `json:"repeat"`
	Concurrency int            `json:"concurrency"`
	Baseline    string         `json:"baseline"` // the target ratios are relative to
	Targets     []TargetReport `json:"targets"`
	// Runs has one entry per distinct content (round × slot), with every
	// target's result for it, in measurement order.
	Runs       []*RunReport `json:"runs"`
	Errors     int          `json:"errors"`     // failed adds, all targets
	Mismatches int          `json:"mismatches"` // runs whose targets' roots differ

	mu      sync.Mutex // guards current, for the progress line
	current string
	rounds  [][]roundResult // [target][round]
}

// DatasetInfo describes the content of each add.
type DatasetInfo struct {
	Kind     string `json:"kind"`
	CAR      bool   `json:"car"`
	Files    int    `json:"files"`
	Entries  int    `json:"entries"` // files and directories
	Bytes    int64  `json:"bytes"`   // file content of one add
	FileSize int64  `json:"file_size"`
	Dirs     int    `json:"dirs,omitempty"`
	Depth    int    `json:"depth,omitempty"`
	Text     string `json:"text"`
}

// TargetReport is the summary of one target over the successful rounds.
type TargetReport struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	URL    string `json:"url"` // without credentials
	Adds   int    `json:"adds"`
	Errors int    `json:"errors"`
	// Rounds counted in the throughput: those in which every add of this
	// target succeeded.
	Rounds     int     `json:"rounds"`
	Bytes      int64   `json:"bytes"`
	Files      int64   `json:"files"`
	Seconds    float64 `json:"seconds"` // wall time of the counted rounds
	MBps       float64 `json:"mb_per_s"`
	FilesPerS  float64 `json:"files_per_s"`
	LatencySec Latency `json:"latency_s"` // per successful add
	// Ratio is MBps ÷ the baseline's MBps (0 if either has none); RatioMin
	// and RatioMax are the extremes of the per-round ratios.
	Ratio    float64 `json:"ratio"`
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
}

// Latency are percentiles (nearest rank) of per-add durations, in seconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// RunReport is one content (one seed) and every target's add of it.
type RunReport struct {
	Run     int         `json:"run"` // round*concurrency + slot: names the seed
	Round   int         `json:"round"`
	Slot    int         `json:"slot"`
	Seed    uint64      `json:"seed"`
	Results []AddResult `json:"results"` // in target order
	// Agree is false when two targets that succeeded reported different
	// roots.
	Agree bool `json:"agree"`

	carRoot cid.Cid
}

// AddResult is one add.
type AddResult struct {
	Target  string  `json:"target"`
	Root    string  `json:"root,omitempty"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
	// Err is the error behind Error: errors.Is(Err, ErrStream), errors.As
	// with *HTTPError or a net.Error tell what failed.
	Err error `json:"-"`
}

type roundResult struct {
	seconds float64
	ok      bool
	adds    int
}

func newReport(cfg *Config) *Report {
	ds := &cfg.Dataset
	r := &Report{
		Dataset: DatasetInfo{
			Kind: ds.Kind.String(), CAR: ds.CAR, Files: ds.NumFiles(), Entries: ds.NumEntries(),
			Bytes: ds.Bytes(), FileSize: ds.FileSize, Text: ds.String(),
		},
		Options:     cfg.Options.Encode(),
		Seed:        cfg.Seed,
		Repeat:      cfg.Repeat,
		Concurrency: cfg.Concurrency,
		Baseline:    cfg.Baseline,
		rounds:      make([][]roundResult, len(cfg.Targets)),
	}
	switch ds.Kind {
	case KindTree:
		r.Dataset.Dirs = ds.Dirs
	case KindDeep:
		r.Dataset.Depth = ds.Depth
	}
	for _, t := range cfg.Targets {
		u, _ := t.base()
		r.Targets = append(r.Targets, TargetReport{Name: t.Name, Kind: t.Kind.String(), URL: u.String()})
	}
	return r
}

func (r *Report) setCurrent(target string, round int) {
	r.mu.Lock()
	r.current = fmt.Sprintf("%s %d/%d", target, round+1, r.Repeat)
	r.mu.Unlock()
}

func (r *Report) currentName() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

func (r *Report) addRound(ti, round int, secs float64, results []AddResult) {
	rr := roundResult{seconds: secs, ok: true, adds: len(results)}
	t := &r.Targets[ti]
	for _, a := range results {
		t.Adds++
		if a.Error != "" {
			t.Errors++
			r.Errors++
			rr.ok = false
		}
	}
	r.rounds[ti] = append(r.rounds[ti], rr)
}

func (r *Report) addRun(run *RunReport) {
	run.Agree = true
	first := ""
	for _, a := range run.Results {
		if a.Error != "" {
			continue
		}
		if first == "" {
			first = a.Root
		} else if !sameCid(first, a.Root) {
			run.Agree = false
		}
	}
	if !run.Agree {
		r.Mismatches++
	}
	r.Runs = append(r.Runs, run)
}

// sameCid compares two CIDs as CIDs (a CIDv1 printed in another base is
// the same CID), falling back to the strings.
func sameCid(a, b string) bool {
	ca, ea := cid.Decode(a)
	cb, eb := cid.Decode(b)
	if ea != nil || eb != nil {
		return a == b
	}
	return ca.Equals(cb)
}

// finish computes the per-target summaries.
func (r *Report) finish() {
	bi := slices.IndexFunc(r.Targets, func(t TargetReport) bool { return t.Name == r.Baseline })
	for ti := range r.Targets {
		t := &r.Targets[ti]
		var lat []float64
		for _, run := range r.Runs {
			if a := run.Results[ti]; a.Error == "" {
				lat = append(lat, a.Seconds)
			}
		}
		t.LatencySec = percentiles(lat)
		for _, rr := range r.rounds[ti] {
			if !rr.ok {
				continue
			}
			t.Rounds++
			t.Seconds += rr.seconds
			t.Bytes += int64(rr.adds) * r.Dataset.Bytes
			t.Files += int64(rr.adds * r.Dataset.Files)
		}
		if t.Seconds > 0 {
			t.MBps = float64(t.Bytes) / 1e6 / t.Seconds
			t.FilesPerS = float64(t.Files) / t.Seconds
		}
	}
	if bi < 0 {
		return
	}
	base := &r.Targets[bi]
	for ti := range r.Targets {
		t := &r.Targets[ti]
		if t.MBps > 0 && base.MBps > 0 {
			t.Ratio = t.MBps / base.MBps
		}
		// Per round: the same content, one after the other.
		for round := range min(len(r.rounds[ti]), len(r.rounds[bi])) {
			a, b := r.rounds[ti][round], r.rounds[bi][round]
			if !a.ok || !b.ok || a.seconds <= 0 {
				continue
			}
			q := b.seconds / a.seconds
			if t.RatioMin == 0 || q < t.RatioMin {
				t.RatioMin = q
			}
			t.RatioMax = math.Max(t.RatioMax, q)
		}
	}
}

// percentiles are nearest-rank percentiles of xs.
func percentiles(xs []float64) Latency {
	if len(xs) == 0 {
		return Latency{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return Latency{P50: rank(50), P90: rank(90), P99: rank(99), Max: s[len(s)-1]}
}

// Err summarises what went wrong: failed adds and runs whose roots differ.
// nil when every add succeeded and every run's roots agree.
func (r *Report) Err() error {
	var errs []error
	if r.Mismatches > 0 {
		errs = append(errs, fmt.Errorf("%w in %d of %d runs", ErrCIDMismatch, r.Mismatches, len(r.Runs)))
	}
	if r.Errors > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of %d", ErrAddFailed, r.Errors, len(r.Runs)*len(r.Targets)))
	}
	return errors.Join(errs...)
}

// Errors of Report.Err.
var (
	ErrCIDMismatch = errors.New("benchtool: root CIDs differ between targets")
	ErrAddFailed   = errors.New("benchtool: adds failed")
)

// WriteText writes the report for humans.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	opts := r.Options
	if opts == "" {
		opts = "(defaults)"
	} else if u, err := url.QueryUnescape(opts); err == nil {
		opts = u
	}
	fmt.Fprintf(&b, "dataset: %s: %d files, %s per add; options %s; %d rounds × %d concurrent adds, seed %d\n",
		r.Dataset.Text, r.Dataset.Files, FormatSize(r.Dataset.Bytes), opts, r.Repeat, r.Concurrency, r.Seed)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "target\tkind\tMB/s\tfiles/s\tp50\tp90\tp99\tmax\tadds\terrors\tvs %s (per round)\n", r.Baseline)
	for _, t := range r.Targets {
		ratio := "-"
		if t.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f× (%.2f–%.2f)", t.Ratio, t.RatioMin, t.RatioMax)
		}
		mbps, fps := "-", "-"
		if t.Rounds > 0 {
			mbps, fps = fmt.Sprintf("%.1f", t.MBps), fmt.Sprintf("%.0f", t.FilesPerS)
			if t.FilesPerS < 100 {
				fps = fmt.Sprintf("%.2f", t.FilesPerS)
			}
		}
		l := t.LatencySec
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", t.Name, t.Kind, mbps, fps,
			formatSecs(l.P50), formatSecs(l.P90), formatSecs(l.P99), formatSecs(l.Max), t.Adds, t.Errors, ratio)
	}
	tw.Flush()
	b.WriteString("roots:\n")
	for _, run := range r.Runs {
		fmt.Fprintf(&b, "  run %d (seed %#x):", run.Run, run.Seed)
		roots := map[string]bool{}
		for _, a := range run.Results {
			if a.Error == "" {
				roots[a.Root] = true
			}
		}
		if run.Agree && len(roots) == 1 {
			for c := range roots {
				fmt.Fprintf(&b, " %s", c)
			}
			if len(run.Results) > 1 {
				b.WriteString(" (all targets agree)")
			}
		} else {
			for _, a := range run.Results {
				if a.Error == "" {
					fmt.Fprintf(&b, " %s=%s", a.Target, a.Root)
				}
			}
		}
		if !run.Agree {
			b.WriteString("  <<< CID MISMATCH")
		}
		b.WriteString("\n")
	}
	for _, run := range r.Runs {
		for _, a := range run.Results {
			if a.Error != "" {
				fmt.Fprintf(&b, "ERROR %s run %d: %s\n", a.Target, run.Run, a.Error)
			}
		}
	}
	if r.Mismatches > 0 {
		fmt.Fprintf(&b, "CID MISMATCH: the targets' roots differ in %d of %d runs\n", r.Mismatches, len(r.Runs))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatSecs(s float64) string {
	switch {
	case s == 0:
		return "-"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	}
	return fmt.Sprintf("%.2fs", s)
}
