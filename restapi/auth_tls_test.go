package restapi

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert is a self-signed RSA certificate for 127.0.0.1 and localhost,
// with its PEM files.
type testCert struct {
	cert              tls.Certificate
	certFile, keyFile string
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ingestd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(tc.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if tc.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return tc
}

// startTLS serves a sibling of ts over TLS with LoadTLSConfig's settings.
func startTLS(t *testing.T, ts *testServer, tc testCert, mutate ...func(*Config)) *testServer {
	t.Helper()
	cfg, err := LoadTLSConfig(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return startSibling(t, ts, func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) }, mutate...)
}

// TestTLSHandshakes: what IPFS Cluster's client offers works — each of
// the four RSA suites over TLS 1.2 on a NIST curve, and TLS 1.3 — no ALPN
// is agreed (HTTP/1.1 only), and TLS 1.1 or X25519 alone fail.
func TestTLSHandshakes(t *testing.T) {
	tc := newTestCert(t)
	ts := startTLS(t, startServer(t), tc)
	addr := strings.TrimPrefix(ts.url, "https://")
	dial := func(c *tls.Config) (tls.ConnectionState, error) {
		c.InsecureSkipVerify = true
		conn, err := tls.Dial("tcp", addr, c)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		return conn.ConnectionState(), nil
	}
	for _, suite := range []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	} {
		for _, curve := range []tls.CurveID{tls.CurveP521, tls.CurveP384, tls.CurveP256} {
			st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}, CurvePreferences: []tls.CurveID{curve}})
			if err != nil || st.CipherSuite != suite || st.Version != tls.VersionTLS12 {
				t.Errorf("TLS 1.2 %s on %v: %v %+v", tls.CipherSuiteName(suite), curve, err, st)
			}
		}
	}
	st, err := dial(&tls.Config{NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.CurveP256}})
	if err != nil || st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "" {
		t.Errorf("TLS 1.3 with ALPN offered: %v version %x ALPN %q", err, st.Version, st.NegotiatedProtocol)
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	if _, err := dial(&tls.Config{CurvePreferences: []tls.CurveID{tls.X25519}}); err == nil {
		t.Error("X25519 alone accepted")
	}
	// A plain HTTP request through the TLS connection.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(ts.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.ProtoMajor != 1 {
		t.Errorf("GET /health over TLS: %d %s", resp.StatusCode, resp.Proto)
	}
}

// TestTLSConfigLoadErrors: missing or mismatched files fail with both
// names in the error.
func TestTLSConfigLoadErrors(t *testing.T) {
	a, b := newTestCert(t), newTestCert(t)
	if _, err := LoadTLSConfig(a.certFile, b.keyFile); err == nil {
		t.Error("certificate with another certificate's key accepted")
	}
	_, err := LoadTLSConfig(a.certFile, filepath.Join(t.TempDir(), "missing.pem"))
	if err == nil || !strings.Contains(err.Error(), "missing.pem") || !strings.Contains(err.Error(), a.certFile) {
		t.Errorf("missing key: %v", err)
	}
	if _, err := LoadTLSConfig(a.certFile, a.keyFile); err != nil {
		t.Errorf("valid pair: %v", err)
	}
}

// TestAuthCtl: the real ipfs-cluster-ctl with Basic credentials over plain
// HTTP (--force-http), and what it says when they are wrong or missing.
func TestAuthCtl(t *testing.T) {
	ts := startServer(t, withAuth(testCreds))
	out, stderr, code := ctl(t, ts, "--basic-auth", "alice:secret", "--force-http", "id")
	if code != 0 || !strings.Contains(out, testPeerID) {
		t.Fatalf("ctl --basic-auth alice:secret --force-http id: exit %d %q %q", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "--basic-auth", "bob:pa:ss", "--force-http", "id")
	if code != 0 || !strings.Contains(out, testPeerID) {
		t.Fatalf("ctl with a password holding ':': exit %d %q %q", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice:wrong", "--force-http", "id")
	if code != 2 || !strings.Contains(out+stderr, "unauthorized: access denied") {
		t.Fatalf("ctl with a wrong password: exit %d %q %q", code, out, stderr)
	}
	// No password after the user: the ctl sends an empty one, refused.
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice", "--force-http", "id")
	if code != 2 || !strings.Contains(out+stderr, "unauthorized: access denied") {
		t.Fatalf("ctl with no password: exit %d %q %q", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "id")
	if code != 2 || !strings.Contains(out+stderr, "unauthorized: no auth provided") {
		t.Fatalf("ctl without credentials: exit %d %q %q", code, out, stderr)
	}
	// --basic-auth alone turns the ctl to HTTPS: a transport error.
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice:secret", "id")
	if code != 1 {
		t.Fatalf("ctl --basic-auth without --force-http on plain HTTP: exit %d %q %q", code, out, stderr)
	}
	// A wrong password on an upload: the 401 reaches the user.
	f := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(f, []byte("hello\n"), 0o600)
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice:wrong", "--force-http", "add", f)
	if code == 0 || !strings.Contains(out+stderr, "unauthorized: access denied") {
		t.Fatalf("ctl add with a wrong password: exit %d %q %q", code, out, stderr)
	}
}

// TestTLSCtl: the real ipfs-cluster-ctl over TLS, with --https or with
// --basic-auth alone (which turns HTTPS on), including a streamed add.
func TestTLSCtl(t *testing.T) {
	tc := newTestCert(t)
	ts := startTLS(t, startServer(t), tc, withAuth(testCreds))
	out, stderr, code := ctl(t, ts, "--https", "--no-check-certificate", "--basic-auth", "alice:secret", "id")
	if code != 0 || !strings.Contains(out, testPeerID) {
		t.Fatalf("ctl --https id: exit %d %q %q", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice:secret", "--no-check-certificate", "id")
	if code != 0 || !strings.Contains(out, testPeerID) {
		t.Fatalf("ctl --basic-auth id over TLS: exit %d %q %q", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice:wrong", "--no-check-certificate", "id")
	if code != 2 || !strings.Contains(out+stderr, "unauthorized: access denied") {
		t.Fatalf("ctl with a wrong password over TLS: exit %d %q %q", code, out, stderr)
	}
	// The certificate is self-signed: without --no-check-certificate the
	// client refuses it, which shows the connection really is TLS.
	if out, stderr, code = ctl(t, ts, "--basic-auth", "alice:secret", "id"); code != 1 {
		t.Fatalf("ctl trusted a self-signed certificate: exit %d %q %q", code, out, stderr)
	}
	f := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(f, []byte("hello world\n"), 0o600)
	want := kuboHash(t, map[string][]byte{"hello.txt": []byte("hello world\n")}, nil, "hello.txt")["hello.txt"]
	out, stderr, code = ctl(t, ts, "--basic-auth", "alice:secret", "--no-check-certificate", "add", "-Q", f)
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("ctl add over TLS: exit %d %q %q, kubo %s", code, out, stderr, want)
	}
}
