package restapi

import (
	"crypto/tls"
	"fmt"
)

// TLSConfig is the server TLS configuration of IPFS Cluster's REST API
// (spec §1.1), for the caller to wrap its listener with (tls.NewListener):
// restapi serves whatever connections it is given.
//
// It is IPFS Cluster's on purpose, because ipfs-cluster-ctl and the Go
// client offer nothing else (spec §6.1): TLS 1.2 at least, with only the
// four RSA AES-256 suites for TLS 1.2, so the certificate must hold an RSA
// key for TLS 1.2 clients (TLS 1.3, which the ctl also speaks, takes any);
// only the NIST curves P-521, P-384 and P-256, since the client offers no
// X25519. TLS 1.3 is allowed, as there. No ALPN is announced, so clients
// speak HTTP/1.1, which the streamed responses' trailers need.
//
// The two TLS_RSA_* suites (no forward secrecy) are kept because the
// reference lists them; Go enables them only because they are listed here.
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.CurveP521, tls.CurveP384, tls.CurveP256},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_RSA_WITH_AES_256_CBC_SHA,
		},
		Certificates: []tls.Certificate{cert},
	}
}

// LoadTLSConfig is TLSConfig with the PEM certificate (chain) and key read
// from files, as IPFS Cluster's ssl_cert_file and ssl_key_file.
func LoadTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return TLSConfig(cert), nil
}
