package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingestd/ingestd/gateway"
	"github.com/ingestd/ingestd/localstore"
)

const (
	// defaultGateway is kubo's gateway address: tools that look for a
	// local gateway try it first.
	defaultGateway = "127.0.0.1:8080"
	// gatewayOff is Config.Gateway for "no gateway". An empty --gateway
	// flag or "gateway" key in the file means it too; an empty variable
	// cannot, since it is the same as an unset one.
	gatewayOff = "off"
	// gatewayShutdownTimeout is how long running gateway responses may
	// go on after SIGTERM before their connections are closed; the REST
	// API gives in-flight adds as long.
	gatewayShutdownTimeout = 30 * time.Second
)

// gatewayFlags are the gateway's flags, applied over the file and the
// environment by apply.
type gatewayFlags struct {
	addr         *string
	deserialized *bool
}

func addGatewayFlags(fs *flag.FlagSet) gatewayFlags {
	return gatewayFlags{
		addr: fs.String("gateway", "", `IPFS gateway on the embedded store, HOST:PORT; "" or off turns it off (env INGESTD_GATEWAY; default 127.0.0.1:8080 as kubo, off with --peer or --cluster)`),
		deserialized: fs.Bool("gateway-deserialized", false,
			"the gateway also serves files and directory listings, not only raw blocks and CARs that clients verify (env INGESTD_GATEWAY_DESERIALIZED=true)"),
	}
}

// fileTurnsGatewayOff reports whether the config file sets "gateway" to
// "", which, unlike a missing key, turns the gateway off.
func fileTurnsGatewayOff(b []byte) bool {
	var f struct {
		Gateway *string `json:"gateway"`
	}
	return json.Unmarshal(b, &f) == nil && f.Gateway != nil && *f.Gateway == ""
}

// apply sets the gateway's settings from the environment, then the flags,
// over what the file set.
func (g gatewayFlags) apply(c *Config, fs *flag.FlagSet, getenv func(string) string) error {
	if v := getenv("INGESTD_GATEWAY"); v != "" {
		c.Gateway = v
	}
	if v := getenv("INGESTD_GATEWAY_DESERIALIZED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("cannot parse INGESTD_GATEWAY_DESERIALIZED=%q: %w", v, err)
		}
		c.GatewayDeserialized = b
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "gateway":
			c.Gateway = *g.addr
			if c.Gateway == "" {
				c.Gateway = gatewayOff
			}
		case "gateway-deserialized":
			c.GatewayDeserialized = *g.deserialized
		}
	})
	return nil
}

// gatewayDefaults sets the default address: kubo's in the embedded mode,
// none with peers or a cluster, whose blocks are not in the embedded store
// (and whose kubo may well hold 127.0.0.1:8080 on the same machine).
func (c *Config) gatewayDefaults() {
	if c.Gateway != "" {
		return
	}
	c.Gateway = defaultGateway
	if len(c.Peers) > 0 || c.Cluster != "" {
		c.Gateway = gatewayOff
	}
}

func (c *Config) validateGateway() error {
	if c.Gateway == gatewayOff {
		return nil
	}
	_, port, err := net.SplitHostPort(c.Gateway)
	if err != nil {
		return fmt.Errorf("cannot use gateway address %q: %w", c.Gateway, err)
	}
	if len(c.Peers) > 0 || c.Cluster != "" {
		return fmt.Errorf("cannot serve the gateway on %s with peers or a cluster: their blocks are not in the embedded store it serves; use their gateways, or --gateway off", c.Gateway)
	}
	if c.Gateway == c.Listen && port != "0" {
		return fmt.Errorf("cannot serve the gateway and the REST API both on %s", c.Gateway)
	}
	return nil
}

// gatewayRunner is the running gateway of the daemon. A nil *gatewayRunner
// is the gateway turned off: its methods do nothing.
type gatewayRunner struct {
	srv  *gateway.Server
	ln   net.Listener
	errc chan error // Serve's error, if it stops before shutdown
}

// listenGateway builds the gateway over store with the API's users and
// TLS settings, its metrics on reg (the daemon's /metrics), and listens on
// its address; serve starts it. It returns nil when the gateway is off.
func listenGateway(cfg *Config, store *localstore.Store, tlsCfg *tls.Config, reg prometheus.Registerer, logger *log.Logger) (*gatewayRunner, error) {
	if cfg.Gateway == gatewayOff {
		return nil, nil
	}
	srv, err := gateway.New(gateway.Config{
		Store:        store,
		Deserialized: cfg.GatewayDeserialized,
		BasicAuth:    cfg.BasicAuth,
		ErrorLog:     logger,
		// boxo's ipfs_http_gw_* metrics, on the daemon's registry.
		MetricsRegistry: reg,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Gateway)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s for the gateway (another gateway, such as kubo's, may hold it; choose another with --gateway HOST:PORT or turn it off with --gateway off): %w", cfg.Gateway, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		// The API's TLS too: with --basic-auth, passwords must not travel
		// in clear on the gateway when they do not on the API.
		ln, scheme = tls.NewListener(ln, tlsCfg), "https"
	}
	mode := "trustless: raw blocks and CARs"
	if cfg.GatewayDeserialized {
		mode = "trustless and deserialized"
	}
	auth := "no auth"
	if len(cfg.BasicAuth) > 0 {
		auth = "basic auth"
	}
	// "at", not "on": tools that wait for the API's address match
	// "on http://".
	logger.Printf("IPFS gateway (%s) at %s://%s/ipfs/, %s", mode, scheme, ln.Addr(), auth)
	return &gatewayRunner{srv: srv, ln: ln, errc: make(chan error, 1)}, nil
}

func (g *gatewayRunner) serve() {
	if g == nil {
		return
	}
	go func() {
		if err := g.srv.Serve(g.ln); err != nil {
			g.errc <- err
		}
	}()
}

// failed returns the channel Serve's error arrives on; nil (never ready)
// when the gateway is off.
func (g *gatewayRunner) failed() <-chan error {
	if g == nil {
		return nil
	}
	return g.errc
}

// shutdown stops the gateway gracefully in the background; the returned
// channel is closed once no request reads the store any more.
func (g *gatewayRunner) shutdown(logger *log.Logger) <-chan struct{} {
	done := make(chan struct{})
	if g == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), gatewayShutdownTimeout)
		defer cancel()
		if err := g.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			logger.Printf("gateway shutdown: responses still running after %s were cut", gatewayShutdownTimeout)
		} else if err != nil {
			logger.Printf("gateway shutdown: %v", err)
		}
	}()
	return done
}
