package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// BenchmarkCarHTTP posts the same CAR (kubo's `dag export` of the benchmark
// input, CIDv1 raw leaves, 1 MiB chunks) to ingestd's /add?format=car and to
// kubo's /api/v0/dag/import, in the same run. Both verify every block and
// pin the root.
func BenchmarkCarHTTP(b *testing.B) {
	size := benchSize()
	input := writeInput(b, size)
	repo := kubotest.NewRepo(b)
	root := strings.TrimSpace(string(repo.Run(b, nil, "add", "-Q", "--cid-version=1", "--chunker=size-1048576", input)))
	carPath := filepath.Join(b.TempDir(), "input.car")
	f, err := os.Create(carPath)
	if err != nil {
		b.Fatal(err)
	}
	f.Write(repo.Run(b, nil, "dag", "export", root))
	f.Close()
	st, _ := os.Stat(carPath)

	ing := startIngestd(b, false)
	ingNoFsync := startIngestd(b, true)
	d := kubotest.StartDaemon(b, kubotest.NewRepo(b))
	for _, c := range []struct{ name, url string }{
		{"kubo/dag-import", d.URL() + "/api/v0/dag/import?pin-roots=true"},
		{"ingestd/car", ing + "/add?format=car"},
		{"ingestd/car-no-fsync", ingNoFsync + "/add?format=car"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(st.Size())
			for b.Loop() {
				last := post(b, c.url, carPath)
				got := last["cid"]
				if got == nil { // kubo: {"Root":{"Cid":{"/":…},"PinErrorMsg":""}}
					if r, ok := last["Root"].(map[string]any); ok {
						got = r["Cid"].(map[string]any)["/"]
					}
				}
				if got != root {
					b.Fatalf("%s imported root %v, want %s", c.name, got, root)
				}
			}
		})
	}
}
