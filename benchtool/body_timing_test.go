package benchtool

import (
	"io"
	"testing"
)

// BenchmarkFilesBody is the cost of generating upload bodies: it must stay
// far above what a server ingests (about 1 GB/s for ingestd on the
// development VM), so that the client does not take the CPU the servers
// under test need.
func BenchmarkFilesBody(b *testing.B) {
	f := func(name string, ds Dataset) {
		b.Run(name, func(b *testing.B) {
			if err := ds.Normalize(); err != nil {
				b.Fatal(err)
			}
			g := newContent(1)
			buf := make([]byte, 32<<10) // what net/http's body copy reads with
			b.SetBytes(ds.Bytes())
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				body := newFilesBody(&ds, g, RunSeed(1, i), nil)
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{body}, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	f("file-256MiB", Dataset{Kind: KindFile, FileSize: 256 << 20})
	f("tree-100x100-4KiB", Dataset{Kind: KindTree, Dirs: 100, Files: 100})
}
