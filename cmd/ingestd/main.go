package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/metrics"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

func main() {
	// Subcommands first; anything else is the daemon's flags.
	sub := ""
	if len(os.Args) > 1 {
		sub = os.Args[1]
	}
	var err error
	switch sub {
	case "bench":
		err = runBench(os.Args[2:], os.Stdout, os.Stderr)
	case "verify":
		err = runVerify(os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
	default:
		err = run(os.Args[1:], os.Getenv, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingestd:", err)
		os.Exit(1)
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := log.New(stderr, "ingestd: ", log.LstdFlags)
	// Load the certificate before anything else starts, so that a bad
	// file stops the daemon at once with its name in the error.
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		if tlsCfg, err = restapi.LoadTLSConfig(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
	}
	// Catch signals before anything is served: a SIGTERM that arrives
	// while the first requests run must stop the server gracefully, not
	// kill it with the default disposition.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("cannot create data directory: %w", err)
	}
	peerID, err := loadIdentity(cfg.Data)
	if err != nil {
		return err
	}
	// The store logs through logger: a full disk makes it read-only, and
	// it says so once (at startup too, when it opens read-only).
	store, err := localstore.Open(filepath.Join(cfg.Data, "store"), localstore.Options{NoSync: cfg.NoFsync, Logf: logger.Printf})
	if err != nil {
		return fmt.Errorf("cannot open store: %w", err)
	}
	defer store.Close()
	pool := ingest.NewHashPool(0)
	defer pool.Stop()
	reg := metrics.New()
	var fanout *blockfanout.Fanout
	if len(cfg.Peers) > 0 {
		pcs := make([]blockfanout.PeerConfig, len(cfg.Peers))
		for i, p := range cfg.Peers {
			pcs[i] = blockfanout.PeerConfig{Name: p.Name, URL: p.URL}
		}
		if fanout, err = blockfanout.New(blockfanout.Config{Peers: pcs, Metrics: reg}); err != nil {
			return err
		}
		if err := fanout.Start(context.Background()); err != nil {
			return fmt.Errorf("cannot start peers: %w", err)
		}
		defer fanout.Stop()
		for _, st := range fanout.Peers() {
			logger.Printf("peer %s: alive=%v id=%s %s", st.Peer.Name, st.Alive, st.ID, st.LastErr)
		}
	}
	var cluster *restapi.ClusterConfig
	if cfg.Cluster != "" {
		if cluster, fanout, err = clusterSetup(cfg, reg); err != nil {
			return err
		}
		if err := fanout.Start(context.Background()); err != nil {
			return fmt.Errorf("cannot start peers: %w", err)
		}
		defer fanout.Stop()
		logger.Printf("in front of the IPFS Cluster at %s", cfg.Cluster)
	}
	apiCfg := restapi.Config{
		Cluster:    cluster,
		Logger:     logger,
		Metrics:    reg,
		GCInterval: gcEvery(cfg),
		Events:     slog.New(slog.NewTextHandler(stderr, nil)),
		PeerID:     peerID,
		PeerName:   cfg.PeerName,
		Store:      store,
		Pins:       pinner.NewStore(store.Datastore(), pinner.StoreOptions{}),
		Pool:       pool,
		Fanout:     fanout,
		BasicAuth:  cfg.BasicAuth,
	}
	cfg.Limits.toServer(&apiCfg)
	srv, err := restapi.New(apiCfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", cfg.Listen, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https"
	}
	auth := "no auth"
	if len(cfg.BasicAuth) > 0 {
		auth = fmt.Sprintf("basic auth for %d users", len(cfg.BasicAuth))
		if tlsCfg == nil {
			auth += " (over plain HTTP: passwords and tokens travel in clear)"
		}
	}
	logger.Printf("peer %s serving the IPFS Cluster REST API on %s://%s, %s (data in %s)", peerID, scheme, ln.Addr(), auth, cfg.Data)
	gw, err := listenGateway(cfg, store, tlsCfg, reg.Registry, logger)
	if err != nil {
		ln.Close()
		return err
	}
	stopObs, err := serveObservability(cfg, reg, logger)
	if err != nil {
		ln.Close()
		<-gw.shutdown(logger)
		return err
	}
	defer stopObs()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	gw.serve()
	var failure error
	select {
	case err := <-serveErr:
		<-gw.shutdown(logger)
		return fmt.Errorf("cannot serve: %w", err)
	case err := <-gw.failed():
		failure = fmt.Errorf("cannot serve the gateway: %w", err)
		logger.Printf("%v: shutting down", failure)
	case s := <-sig:
		logger.Printf("%s: shutting down", s)
	}
	// The API and the gateway stop together; the store is closed (defer)
	// once neither reads it.
	gwStopped := gw.shutdown(logger)
	if err := srv.Shutdown(); err != nil {
		logger.Printf("shutdown: %v", err)
	}
	<-gwStopped
	logger.Printf("stopped")
	return failure
}
