package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMetricsAndDebugListeners: --metrics serves the Prometheus metrics
// without auth on its own address, the API serves them behind its auth,
// and --debug serves pprof.
func TestMetricsAndDebugListeners(t *testing.T) {
	bin := buildBinary(t)
	p := start(t, bin, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--gateway", "",
		"--metrics", "127.0.0.1:0", "--debug", "127.0.0.1:0", "--basic-auth", "alice:secret")
	addr := func(what string) string {
		re := regexp.MustCompile(`serving ` + what + ` on (http://127\.0\.0\.1:\d+)`)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if m := re.FindStringSubmatch(p.logText()); m != nil {
				return m[1]
			}
		}
		t.Fatalf("ingestd did not log its %s address:\n%s", what, p.logText())
		return ""
	}
	get := func(u, user string) (int, string) {
		req, _ := http.NewRequest("GET", u, nil)
		if user != "" {
			req.SetBasicAuth(user, "secret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	callID := func() {
		req, _ := http.NewRequest("GET", p.url+"/id", nil)
		req.SetBasicAuth("alice", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /id: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	callID()
	code, body := get(addr("metrics")+"/metrics", "")
	if code != 200 || !strings.Contains(body, "ingestd_adds_in_flight 0") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("--metrics: %d %.300s", code, body)
	}
	if code, _ := get(p.url+"/metrics", ""); code != 401 {
		t.Fatalf("the API's /metrics without credentials: %d, want 401", code)
	}
	if code, body := get(p.url+"/metrics", "alice"); code != 200 || !strings.Contains(body, "ipfscluster_pins 0") {
		t.Fatalf("the API's /metrics: %d %.300s", code, body)
	}
	if code, body := get(addr("pprof")+"/debug/pprof/", ""); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("--debug: %d %.300s", code, body)
	}
}

// TestConfigGCInterval: --gc-interval takes a positive duration, and a bad
// one stops the daemon at start with the value named.
func TestConfigGCInterval(t *testing.T) {
	env := func(string) string { return "" }
	c, err := loadConfig([]string{"--gc-interval", "90m", "--data", t.TempDir()}, env, io.Discard)
	if err != nil || gcEvery(c) != 90*time.Minute {
		t.Fatalf("--gc-interval 90m: %v, %v", c, err)
	}
	for _, bad := range []string{"bogus", "0s", "-1h"} {
		if _, err := loadConfig([]string{"--gc-interval", bad, "--data", t.TempDir()}, env, io.Discard); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("--gc-interval %s: %v", bad, err)
		}
	}
}
