package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration of the daemon. The zero value plus
// defaults() is the zero-configuration mode.
type Config struct {
	// Data is the directory of the embedded block and pin store and of the
	// peer identity. Default ~/.ingestd.
	Data string `json:"data"`
	// Listen is the REST API address. Default 127.0.0.1:9094, as IPFS Cluster.
	Listen string `json:"listen"`
	// PeerName is reported by /id. Default "".
	PeerName string `json:"peername"`
	// NoFsync skips the fsync that makes an add's blocks and pin durable
	// before the add is acknowledged. Acknowledged adds still survive a
	// crash of the process (kill -9), not of the machine: kubo's default
	// flatfs store (sync: false) gives the same. Default false.
	NoFsync bool `json:"no_fsync"`
	// Peers are kubo RPC endpoints that receive the blocks of every add and
	// pin them, instead of the embedded store. Default none.
	Peers []PeerConfig `json:"peers"`
	// BasicAuth maps users to passwords; set, every request but GET /health
	// and CORS preflights needs them or a token from POST /token. The JSON
	// key is IPFS Cluster's, so a service.json entry can be copied. Default
	// none: no auth, as IPFS Cluster.
	BasicAuth map[string]string `json:"basic_auth_credentials"`
	// TLSCert and TLSKey are PEM files; both set, the API is served over
	// TLS only (restapi.TLSConfig). In the config file, relative paths are
	// relative to the file's directory, as IPFS Cluster resolves them.
	// Default "": plain HTTP.
	TLSCert string `json:"ssl_cert_file"`
	TLSKey  string `json:"ssl_key_file"`
	// Cluster is the REST API URL of an IPFS Cluster peer: ingestd then
	// runs in front of that cluster (docs/cluster.md) instead of keeping
	// its own pinset. Default "": ingestd's own pinset.
	Cluster string `json:"cluster"`
	// ClusterBasicAuth is USER:PASSWORD for the cluster's API, ClusterToken
	// a JWT from its POST /token. Default none.
	ClusterBasicAuth string `json:"cluster_basic_auth"`
	ClusterToken     string `json:"cluster_token"`
	// GCInterval runs the embedded store's garbage collection this often
	// (a Go duration). Default "": only on POST /ipfs/gc.
	GCInterval string `json:"gc_interval"`
	// Metrics is an extra address serving GET /metrics without auth (the
	// API serves it too, with the API's auth). Default "": none.
	Metrics string `json:"metrics"`
	// Debug is an address serving Go's pprof handlers under /debug/pprof/.
	// Default "": none. Keep it on loopback.
	Debug string `json:"debug"`
	// ClusterKubo maps cluster peer IDs to their kubo RPC API URLs; others
	// default to the host of the peer's IPFS addresses, port 5001.
	ClusterKubo map[string]string `json:"cluster_kubo"`
	// Gateway is the address of the IPFS gateway on the embedded store
	// (package gateway, docs/gateway.md); "off" turns it off, and so does
	// "" given as the flag or in the file. Default 127.0.0.1:8080, as
	// kubo, in the embedded mode; off with peers or a cluster.
	Gateway string `json:"gateway"`
	// GatewayDeserialized makes the gateway serve files and directory
	// listings too, not only the raw blocks and CARs clients verify.
	// Default false.
	GatewayDeserialized bool `json:"gateway_deserialized"`
	// Limits bound the connections, time and add slots clients may hold.
	// Default: restapi's (docs/reliability.md).
	Limits Limits `json:"limits"`
}

// PeerConfig is one kubo daemon: its RPC API URL and an optional name.
type PeerConfig struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// peerList is the repeatable --peer flag: [NAME=]URL.
type peerList []PeerConfig

func (l *peerList) String() string { return fmt.Sprint(*l) }

func (l *peerList) Set(v string) error {
	p, err := parsePeer(v)
	if err != nil {
		return err
	}
	*l = append(*l, p)
	return nil
}

func parsePeer(v string) (PeerConfig, error) {
	name, u, ok := strings.Cut(v, "=")
	if !ok {
		name, u = "", v
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return PeerConfig{}, fmt.Errorf("cannot use peer %q: want [NAME=]http://HOST:PORT", v)
	}
	return PeerConfig{Name: name, URL: u}, nil
}

// credList is the repeatable --basic-auth flag: USER:PASSWORD. Set never
// fails: the values are parsed after the flags, because the flag package
// would quote a rejected value, which may be a password, in its error.
type credList []string

func (l *credList) String() string { return "" }

func (l *credList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

var errBadCredential = errors.New("want USER:PASSWORD with a non-empty user and password")

// addCredential parses USER:PASSWORD into creds. The password is what
// follows the first ':', as in a Basic header, so it may hold ':'. Errors
// name the user at most, never the value, which may be a password.
func addCredential(creds map[string]string, v string) error {
	user, pass, ok := strings.Cut(v, ":")
	switch {
	case !ok || user == "":
		return fmt.Errorf("cannot use basic auth credentials: %w", errBadCredential)
	case pass == "":
		return fmt.Errorf("cannot use basic auth credentials of user %q: empty password (IPFS Cluster clients would be refused): %w", user, errBadCredential)
	}
	if _, dup := creds[user]; dup {
		return fmt.Errorf("cannot use basic auth credentials of user %q: given twice", user)
	}
	creds[user] = pass
	return nil
}

func (c *Config) defaults() {
	if c.Data == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = "."
		}
		c.Data = filepath.Join(home, ".ingestd")
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9094"
	}
	c.gatewayDefaults()
}

func (c *Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("cannot use listen address %q: %w", c.Listen, err)
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if c.GCInterval != "" {
		if d, err := time.ParseDuration(c.GCInterval); err != nil || d <= 0 {
			return fmt.Errorf("cannot use gc interval %q: want a positive duration such as 1h", c.GCInterval)
		}
	}
	if err := c.validateGateway(); err != nil {
		return err
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.BasicAuth != nil && len(c.BasicAuth) == 0 {
		// As IPFS Cluster: an empty object is a mistake, not "auth off".
		return errors.New("cannot use basic_auth_credentials: it is empty; remove it to turn auth off")
	}
	for u, p := range c.BasicAuth {
		if u == "" || p == "" || strings.Contains(u, ":") {
			return fmt.Errorf("cannot use basic auth credentials of user %q: the user must be non-empty without ':', the password non-empty", u)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("cannot use TLS: certificate %q and key %q must be given together", c.TLSCert, c.TLSKey)
	}
	return nil
}

// loadConfig merges the config file, the environment and the flags.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("ingestd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", getenv("INGESTD_CONFIG"), "JSON config file (env INGESTD_CONFIG)")
	data := fs.String("data", "", "data directory (env INGESTD_DATA; default ~/.ingestd)")
	listen := fs.String("listen", "", "REST API listen address (env INGESTD_LISTEN; default 127.0.0.1:9094)")
	peername := fs.String("peername", "", "peer name reported by /id (env INGESTD_PEERNAME)")
	var peers peerList
	fs.Var(&peers, "peer", "kubo RPC API that receives and pins the blocks, [NAME=]http://HOST:PORT; repeatable (env INGESTD_PEERS, comma-separated)")
	noFsync := fs.Bool("no-fsync", false, "do not fsync before acknowledging an add: survives kill -9, not power loss, like kubo's default store (env INGESTD_NO_FSYNC=true)")
	var creds credList
	fs.Var(&creds, "basic-auth", "require Basic auth or a token from POST /token with USER:PASSWORD; repeatable (env INGESTD_BASIC_AUTH, comma-separated; the environment or config file keep passwords out of ps)")
	tlsCert := fs.String("tls-cert", "", "serve over TLS with this PEM certificate (env INGESTD_TLS_CERT; needs --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert (env INGESTD_TLS_KEY)")
	gatewayFlags := addGatewayFlags(fs)
	limitFlags := addLimitFlags(fs)
	cluster := fs.String("cluster", "", "run in front of the IPFS Cluster whose REST API is at this URL (env INGESTD_CLUSTER)")
	clusterAuth := fs.String("cluster-basic-auth", "", "USER:PASSWORD for the cluster's REST API (env INGESTD_CLUSTER_BASIC_AUTH)")
	clusterToken := fs.String("cluster-token", "", "JWT for the cluster's REST API (env INGESTD_CLUSTER_TOKEN)")
	gcInterval := fs.String("gc-interval", "", "run the embedded store's garbage collection this often, e.g. 1h (env INGESTD_GC_INTERVAL; default: only on POST /ipfs/gc)")
	metricsAddr := fs.String("metrics", "", "also serve GET /metrics, without auth, on this address (env INGESTD_METRICS)")
	debugAddr := fs.String("debug", "", "serve Go's pprof under /debug/pprof/ on this address; keep it on loopback (env INGESTD_DEBUG)")
	var clusterKubo kuboList
	fs.Var(&clusterKubo, "cluster-kubo", "PEERID=URL: the kubo RPC API of a cluster peer, when not its IPFS address's host on port 5001; repeatable (env INGESTD_CLUSTER_KUBO, comma-separated)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	c := &Config{}
	if *cfgFile != "" {
		b, err := os.ReadFile(*cfgFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read config file: %w", err)
		}
		dec := json.NewDecoder(bytesReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("cannot parse config file %s: %w", *cfgFile, err)
		}
		if fileTurnsGatewayOff(b) {
			c.Gateway = gatewayOff
		}
		for _, p := range []*string{&c.TLSCert, &c.TLSKey} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(filepath.Dir(*cfgFile), *p)
			}
		}
	}
	for _, o := range []struct {
		env  string
		flag string
		dst  *string
	}{
		{"INGESTD_DATA", *data, &c.Data},
		{"INGESTD_LISTEN", *listen, &c.Listen},
		{"INGESTD_PEERNAME", *peername, &c.PeerName},
		{"INGESTD_TLS_CERT", *tlsCert, &c.TLSCert},
		{"INGESTD_TLS_KEY", *tlsKey, &c.TLSKey},
		{"INGESTD_CLUSTER", *cluster, &c.Cluster},
		{"INGESTD_METRICS", *metricsAddr, &c.Metrics},
		{"INGESTD_GC_INTERVAL", *gcInterval, &c.GCInterval},
		{"INGESTD_DEBUG", *debugAddr, &c.Debug},
		{"INGESTD_CLUSTER_BASIC_AUTH", *clusterAuth, &c.ClusterBasicAuth},
		{"INGESTD_CLUSTER_TOKEN", *clusterToken, &c.ClusterToken},
	} {
		if v := getenv(o.env); v != "" {
			*o.dst = v
		}
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if v := getenv("INGESTD_PEERS"); v != "" {
		c.Peers = nil
		for _, e := range strings.Split(v, ",") {
			p, err := parsePeer(strings.TrimSpace(e))
			if err != nil {
				return nil, err
			}
			c.Peers = append(c.Peers, p)
		}
	}
	if len(peers) > 0 {
		c.Peers = peers
	}
	// Each source replaces the whole set of users of the one below it, as
	// for peers: a flag never adds a user to the file's.
	if v := getenv("INGESTD_BASIC_AUTH"); v != "" {
		c.BasicAuth = map[string]string{}
		for _, e := range strings.Split(v, ",") {
			if err := addCredential(c.BasicAuth, e); err != nil {
				return nil, fmt.Errorf("cannot parse INGESTD_BASIC_AUTH: %w", err)
			}
		}
	}
	if len(creds) > 0 {
		c.BasicAuth = map[string]string{}
		for _, e := range creds {
			if err := addCredential(c.BasicAuth, e); err != nil {
				return nil, fmt.Errorf("cannot parse --basic-auth: %w", err)
			}
		}
	}
	if v := getenv("INGESTD_CLUSTER_KUBO"); v != "" {
		c.ClusterKubo = nil
		var l kuboList
		for _, e := range strings.Split(v, ",") {
			if err := l.Set(strings.TrimSpace(e)); err != nil {
				return nil, fmt.Errorf("cannot parse INGESTD_CLUSTER_KUBO: %w", err)
			}
		}
		c.ClusterKubo = l
	}
	if len(clusterKubo) > 0 {
		c.ClusterKubo = clusterKubo
	}
	if v := getenv("INGESTD_NO_FSYNC"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("cannot parse INGESTD_NO_FSYNC=%q: %w", v, err)
		}
		c.NoFsync = b
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "no-fsync" {
			c.NoFsync = *noFsync
		}
	})
	if err := gatewayFlags.apply(c, fs, getenv); err != nil {
		return nil, err
	}
	if err := limitFlags.apply(&c.Limits, getenv); err != nil {
		return nil, err
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}
