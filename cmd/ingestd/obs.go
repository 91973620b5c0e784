package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ingestd/ingestd/metrics"
)

// serveObservability starts the optional --metrics and --debug listeners
// and returns the function that stops them.
func serveObservability(cfg *Config, m *metrics.Metrics, logger *log.Logger) (stop func(), err error) {
	var srvs []*http.Server
	stop = func() {
		for _, s := range srvs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Shutdown(ctx)
			cancel()
		}
	}
	start := func(addr, what string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("cannot listen on %s for %s: %w", addr, what, err)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		srvs = append(srvs, s)
		logger.Printf("serving %s on http://%s", what, ln.Addr())
		go func() {
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Printf("%s: %v", what, err)
			}
		}()
		return nil
	}
	if cfg.Metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
		if err := start(cfg.Metrics, "metrics", mux); err != nil {
			stop()
			return nil, err
		}
	}
	if cfg.Debug != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if err := start(cfg.Debug, "pprof", mux); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// gcEvery is the validated --gc-interval, 0 when unset.
func gcEvery(cfg *Config) time.Duration {
	d, _ := time.ParseDuration(cfg.GCInterval)
	return d
}
