package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ingestd/ingestd/benchtool"
)

const benchUsage = `usage: ingestd bench --target [NAME=]KIND:URL [--target …] [flags]

Generates deterministic data, uploads it to every target interleaved
(A B A B; every run on distinct content, the same for every target) and
reports MB/s, files/s, per-add latency, the ratio to the baseline and the
root CIDs, which must agree between targets. Exits non-zero when an add
fails or the roots differ.

KIND is cluster (an IPFS Cluster REST API: ingestd, or a real cluster; POST
/add) or kubo (a kubo RPC API; POST /api/v0/add, /api/v0/dag/import for
--car). Example:

  ingestd bench --target ingestd=cluster:http://127.0.0.1:9094 \
    --target kubo=kubo:http://127.0.0.1:5001 --dataset tree --dirs 100 --files 100

flags:
`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// runBench is `ingestd bench ARGS`: the report goes to stdout, the
// progress line to stderr when it is a terminal.
func runBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingestd bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var targets, opts, targetAuth, targetToken stringList
	fs.Var(&targets, "target", "[NAME=]KIND:URL, KIND cluster or kubo; repeatable, measured in this order (credentials in the URL are Basic auth)")
	dataset := fs.String("dataset", "tree", "what each add uploads: file (one file of --size), tree (--dirs directories of --files files of --size) or deep (--depth nested directories of --files files each)")
	size := fs.String("size", "", "bytes per file, e.g. 4KiB, 1GiB, 10MB (default 1GiB for file, 4KiB otherwise)")
	dirs := fs.Int("dirs", benchtool.DefaultDirs, "tree: directories")
	files := fs.Int("files", 0, "tree: files per directory (default 100); deep: files per level (default 1)")
	depth := fs.Int("depth", benchtool.DefaultDepth, "deep: nested directories")
	car := fs.Bool("car", false, "upload a CAR of the dataset's DAG, built with the add options (cluster: /add?format=car; kubo: /api/v0/dag/import)")
	fs.Var(&opts, "opt", "add option KEY=VALUE passed as a query parameter (cid-version=1, raw-leaves=true, chunker=size-1048576, profile=unixfs-v1-2025, …); repeatable")
	repeat := fs.Int("repeat", benchtool.DefaultRepeat, "rounds")
	concurrency := fs.Int("concurrency", benchtool.DefaultConcurrency, "adds in flight on a target in each round, each on its own content")
	seed := fs.Uint64("seed", 0, "base seed of the content (default a random one, printed in the report: the same seed gives the same content, which stores that already hold it deduplicate)")
	timeout := fs.Duration("timeout", benchtool.DefaultTimeout, "limit of one add")
	basicAuth := fs.String("basic-auth", "", "USER:PASSWORD for every target without its own")
	token := fs.String("token", "", "JWT (IPFS Cluster's POST /token) for every target without its own; sent as a Bearer token")
	fs.Var(&targetAuth, "target-basic-auth", "NAME=USER:PASSWORD for one target; repeatable")
	fs.Var(&targetToken, "target-token", "NAME=JWT for one target; repeatable")
	baseline := fs.String("baseline", "", "the target the ratios are relative to (default the last one)")
	insecure := fs.Bool("insecure", false, "do not verify TLS certificates")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	noProgress := fs.Bool("no-progress", false, "no progress line (there is none when stderr is not a terminal)")
	writeDir := fs.String("write", "", "write the files of run 0 (the first add's content) of --seed under this directory and exit, e.g. for `ipfs add -r`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		*seed = rand.Uint64()
	}
	cfg := benchtool.Config{
		Repeat: *repeat, Concurrency: *concurrency, Seed: *seed, Timeout: *timeout,
		Baseline: *baseline, Insecure: *insecure, Options: url.Values{},
	}
	kind, err := benchtool.ParseKind(*dataset)
	if err != nil {
		return err
	}
	cfg.Dataset = benchtool.Dataset{Kind: kind, Files: *files, CAR: *car}
	switch kind {
	case benchtool.KindTree:
		cfg.Dataset.Dirs = *dirs
	case benchtool.KindDeep:
		cfg.Dataset.Depth = *depth
	}
	if *size != "" {
		if cfg.Dataset.FileSize, err = benchtool.ParseSize(*size); err != nil {
			return err
		}
		if cfg.Dataset.FileSize == 0 {
			return errors.New("cannot use --size 0")
		}
	}
	if err := cfg.Dataset.Normalize(); err != nil {
		return err
	}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok || k == "" {
			return fmt.Errorf("cannot parse --opt %q: want KEY=VALUE", o)
		}
		cfg.Options.Add(k, v)
	}
	if *writeDir != "" {
		if !seedSet {
			return errors.New("cannot --write without --seed: give the seed of the run to reproduce")
		}
		return cfg.Dataset.WriteFiles(*writeDir, *seed, benchtool.RunSeed(*seed, 0))
	}

	if len(targets) == 0 {
		fs.Usage()
		return errors.New("no --target")
	}
	byName := map[string]*benchtool.Target{}
	for _, s := range targets {
		t, err := benchtool.ParseTarget(s)
		if err != nil {
			return err
		}
		cfg.Targets = append(cfg.Targets, t)
	}
	for i := range cfg.Targets {
		byName[cfg.Targets[i].Name] = &cfg.Targets[i]
	}
	perTarget := func(flagName string, list stringList, set func(*benchtool.Target, string)) error {
		for _, s := range list {
			name, v, ok := strings.Cut(s, "=")
			t := byName[name]
			if !ok || t == nil {
				return fmt.Errorf("cannot parse --%s %q: want NAME=VALUE with NAME one of the targets", flagName, s)
			}
			set(t, v)
		}
		return nil
	}
	if err := perTarget("target-basic-auth", targetAuth, func(t *benchtool.Target, v string) { t.BasicAuth = v }); err != nil {
		return err
	}
	if err := perTarget("target-token", targetToken, func(t *benchtool.Target, v string) { t.Token = v }); err != nil {
		return err
	}
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		if u, _ := url.Parse(t.URL); t.BasicAuth == "" && t.Token == "" && (u == nil || u.User == nil) {
			t.BasicAuth, t.Token = *basicAuth, *token
		}
	}
	if f, ok := stderr.(*os.File); ok && !*noProgress && benchtool.IsTerminal(f) {
		cfg.Progress = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := benchtool.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return err
	}
	return rep.Err()
}
