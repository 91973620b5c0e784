package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// BenchmarkCarHTTP posts the same CARs (kubo's `dag export` of variants
// of the benchmark input, CIDv1 raw leaves, 1 MiB chunks) to ingestd's
// /add?format=car and to kubo's /api/v0/dag/import, in the same run. Both
// verify every block and pin the root. Op i of every case posts the CAR of
// variant i (setVariant), so that every import stores every block.
func BenchmarkCarHTTP(b *testing.B) {
	size := benchSize()
	input := writeInput(b, size)
	repo := kubotest.NewRepo(b)
	dir := b.TempDir()
	type carFile struct {
		path, root string
		size       int64
	}
	var cars []carFile
	carFor := func(v int) carFile {
		for len(cars) <= v {
			setVariant(b, input, uint64(len(cars)))
			root := strings.TrimSpace(string(repo.Run(b, nil, "add", "-Q", "--cid-version=1", "--chunker=size-1048576", input)))
			p := filepath.Join(dir, fmt.Sprintf("input-%d.car", len(cars)))
			if err := os.WriteFile(p, repo.Run(b, nil, "dag", "export", root), 0o600); err != nil {
				b.Fatal(err)
			}
			st, _ := os.Stat(p)
			cars = append(cars, carFile{p, root, st.Size()})
		}
		return cars[v]
	}

	ing := startIngestd(b, false)
	ingNoFsync := startIngestd(b, true)
	d := kubotest.StartDaemon(b, kubotest.NewRepo(b))
	for _, c := range []struct{ name, url string }{
		{"kubo/dag-import", d.URL() + "/api/v0/dag/import?pin-roots=true"},
		{"ingestd/car", ing + "/add?format=car"},
		{"ingestd/car-no-fsync", ingNoFsync + "/add?format=car"},
	} {
		carFor(2) // build the CARs of -benchtime 3x outside the timings
		syscall.Sync()
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(carFor(0).size)
			v := 0
			for b.Loop() {
				b.StopTimer()
				car := carFor(v)
				v++
				b.StartTimer()
				last := post(b, c.url, car.path)
				got := last["cid"]
				if got == nil { // kubo: {"Root":{"Cid":{"/":…},"PinErrorMsg":""}}
					if r, ok := last["Root"].(map[string]any); ok {
						got = r["Cid"].(map[string]any)["/"]
					}
				}
				if got != car.root {
					b.Fatalf("%s imported root %v, want %s", c.name, got, car.root)
				}
			}
		})
	}
}
