package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestConfigAuthTLSPrecedence: flags win over the environment, which wins
// over the file, for the users (each source replacing the whole set) and
// for each TLS file; relative paths in the file are the file's.
func TestConfigAuthTLSPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	os.WriteFile(file, []byte(`{"basic_auth_credentials":{"filer":"fpw"},"ssl_cert_file":"c.pem","ssl_key_file":"/abs/k.pem"}`), 0o600)
	env := map[string]string{"INGESTD_CONFIG": file}

	c, err := loadConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.BasicAuth, map[string]string{"filer": "fpw"}) || c.TLSCert != filepath.Join(dir, "c.pem") || c.TLSKey != "/abs/k.pem" {
		t.Fatalf("from the file: %+v", c)
	}

	env["INGESTD_BASIC_AUTH"] = "envy:epw,other:o:pw"
	env["INGESTD_TLS_CERT"] = "env-cert.pem"
	c, err = loadConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.BasicAuth, map[string]string{"envy": "epw", "other": "o:pw"}) || c.TLSCert != "env-cert.pem" || c.TLSKey != "/abs/k.pem" {
		t.Fatalf("env over the file: %+v", c)
	}

	c, err = loadConfig([]string{"--basic-auth", "alice:secret", "--basic-auth", "bob:pa:ss", "--tls-cert", "f.pem", "--tls-key", "fk.pem"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.BasicAuth, map[string]string{"alice": "secret", "bob": "pa:ss"}) || c.TLSCert != "f.pem" || c.TLSKey != "fk.pem" {
		t.Fatalf("flags over env: %+v", c)
	}

	// Nothing set: no auth, no TLS.
	c, err = loadConfig(nil, envOf(nil), io.Discard)
	if err != nil || c.BasicAuth != nil || c.TLSCert != "" || c.TLSKey != "" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	// null in the file is "no auth", as in IPFS Cluster's service.json.
	os.WriteFile(file, []byte(`{"basic_auth_credentials":null}`), 0o600)
	if c, err = loadConfig(nil, envOf(map[string]string{"INGESTD_CONFIG": file}), io.Discard); err != nil || c.BasicAuth != nil {
		t.Fatalf("null credentials: %+v %v", c, err)
	}
}

// TestConfigAuthTLSRejected: settings that could only lock users out or
// half-configure TLS stop the daemon at start with a clear error, which
// never repeats a password.
func TestConfigAuthTLSRejected(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	f := func(name string, args []string, env map[string]string, fileJSON string, wantErr string) {
		t.Helper()
		if fileJSON != "" {
			os.WriteFile(file, []byte(fileJSON), 0o600)
			env = maps.Clone(env)
			if env == nil {
				env = map[string]string{}
			}
			env["INGESTD_CONFIG"] = file
		}
		_, err := loadConfig(args, envOf(env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	f("flag without colon", []string{"--basic-auth", "hunter2"}, nil, "", "want USER:PASSWORD")
	f("flag empty password", []string{"--basic-auth", "alice:"}, nil, "", `user "alice": empty password`)
	f("flag empty user", []string{"--basic-auth", ":hunter2"}, nil, "", "want USER:PASSWORD")
	f("flag twice", []string{"--basic-auth", "alice:hunter2", "--basic-auth", "alice:x"}, nil, "", `user "alice": given twice`)
	f("env without colon", nil, map[string]string{"INGESTD_BASIC_AUTH": "alice:x,hunter2"}, "", "INGESTD_BASIC_AUTH")
	f("env empty password", nil, map[string]string{"INGESTD_BASIC_AUTH": "alice:"}, "", "empty password")
	f("env trailing comma", nil, map[string]string{"INGESTD_BASIC_AUTH": "alice:hunter2,"}, "", "want USER:PASSWORD")
	f("file empty object", nil, nil, `{"basic_auth_credentials":{}}`, "it is empty")
	f("file empty password", nil, nil, `{"basic_auth_credentials":{"alice":""}}`, `user "alice"`)
	f("file empty user", nil, nil, `{"basic_auth_credentials":{"":"hunter2"}}`, `user ""`)
	f("file user with colon", nil, nil, `{"basic_auth_credentials":{"al:ice":"hunter2"}}`, `user "al:ice"`)
	f("cert without key", []string{"--tls-cert", "c.pem"}, nil, "", "must be given together")
	f("key without cert", nil, map[string]string{"INGESTD_TLS_KEY": "k.pem"}, "", "must be given together")
	f("file cert without key", nil, nil, `{"ssl_cert_file":"c.pem"}`, "must be given together")

	// Files that do not load stop run before anything is opened.
	err := run([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", filepath.Join(dir, "nokey.pem")}, envOf(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("missing certificate file: %v", err)
	}
}

// writeTestCert writes a self-signed RSA certificate for 127.0.0.1 and its
// key as PEM files and returns their paths and a pool trusting it.
func writeTestCert(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ingestd e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return certFile, keyFile, roots
}

// TestTLSBasicAuthBinary: the built daemon with --tls-cert, --tls-key and
// --basic-auth serves HTTPS with that certificate only, checks credentials,
// issues IPFS Cluster's token, and adds and pins through TLS and auth.
func TestTLSBasicAuthBinary(t *testing.T) {
	bin := buildBinary(t)
	certFile, keyFile, roots := writeTestCert(t)
	p := start(t, bin, "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile, "--basic-auth", "alice:secret")
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("serving on %s", p.url)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	do := func(method, path, authz string, body io.Reader, ct string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, p.url+path, body)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Trailer.Get("X-Stream-Error") != "" {
			t.Fatalf("%s %s: trailer %q", method, path, resp.Trailer.Get("X-Stream-Error"))
		}
		return resp.StatusCode, string(b)
	}
	alice := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret"))

	if code, _ := do("GET", "/health", "", nil, ""); code != 204 {
		t.Fatalf("GET /health: %d", code)
	}
	if code, b := do("GET", "/id", "", nil, ""); code != 401 || !strings.Contains(b, "unauthorized: no auth provided") {
		t.Fatalf("GET /id without credentials: %d %q", code, b)
	}
	if code, b := do("GET", "/id", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:wrong")), nil, ""); code != 401 || !strings.Contains(b, "access denied") {
		t.Fatalf("GET /id with a wrong password: %d %q", code, b)
	}
	code, b := do("POST", "/token", alice, nil, "")
	var tok struct{ Token string }
	json.Unmarshal([]byte(b), &tok)
	if code != 200 || tok.Token != "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhbGljZSJ9.cyNU8xTEDNzXijU9Vl5LF5aZ1Y2q91Q_q_VmSddkqII" {
		t.Fatalf("POST /token: %d %q", code, b)
	}

	var buf strings.Builder
	buf.WriteString("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nover tls\n\r\n--b--\r\n")
	code, b = do("POST", "/add", "Bearer "+tok.Token, strings.NewReader(buf.String()), "multipart/form-data; boundary=b")
	var out struct{ Cid string }
	if code != 200 || json.Unmarshal([]byte(strings.TrimSpace(b)), &out) != nil || out.Cid == "" {
		t.Fatalf("POST /add with the token: %d %q", code, b)
	}
	if code, b := do("GET", "/allocations/"+out.Cid, alice, nil, ""); code != 200 {
		t.Fatalf("GET /allocations/%s: %d %q", out.Cid, code, b)
	}

	// Plain HTTP on the TLS port gets no answer.
	if resp, err := http.Get("http" + strings.TrimPrefix(p.url, "https") + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("plain HTTP answered %d", resp.StatusCode)
	}
	// Nor does a client that does not trust the certificate.
	if resp, err := http.Get(p.url + "/health"); err == nil || !errors.As(err, new(*tls.CertificateVerificationError)) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("untrusted certificate: %v", err)
	}

	if ctlBin := os.Getenv("INGESTD_CTL_BIN"); ctlBin != "" {
		host := "/ip4/127.0.0.1/tcp/" + p.url[strings.LastIndex(p.url, ":")+1:]
		out, err := exec.Command(ctlBin, "--host", host, "--basic-auth", "alice:secret", "--no-check-certificate", "id").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "12D3KooW") {
			t.Fatalf("ipfs-cluster-ctl id over TLS: %v %s", err, out)
		}
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exit; err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs)
	}
	if !strings.Contains(p.logs.String(), "basic auth for 1 users") {
		t.Errorf("start log does not say auth is on:\n%s", p.logs)
	}
}
