package multipart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func build(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--B\r\n" + p + "\r\n")
	}
	b.WriteString("--B--\r\n")
	return b.String()
}

func TestReader(t *testing.T) {
	body := build(
		"Content-Disposition: form-data; name=\"file?mode=020000000755&mtime=1700000000&mtime-nsecs=5\"; filename=\"dir1\"\r\nContent-Type: application/x-directory\r\n\r\n",
		"Content-Disposition: form-data; name=\"file?mode=0644&mtime=1700000001\"; filename=\"dir1%2Fa.txt\"\r\nContent-Type: application/octet-stream\r\n\r\naaa",
		"Content-Disposition: form-data; name=\"file\"; filename=\"dir1/link\"\r\nContent-Type: application/symlink\r\n\r\n../target",
		"Content-Disposition: form-data; name=\"file\"; filename=\"../../escape\"\r\n\r\nx",
		"Content-Disposition: form-data; name=\"file\"\r\n\r\nnoname",
	)
	type got struct {
		path  string
		kind  Kind
		mode  os.FileMode
		mtime time.Time
		data  string
	}
	want := []got{
		{"dir1", Dir, 020000000755, time.Unix(1700000000, 5), ""},
		{"dir1/a.txt", File, 0644, time.Unix(1700000001, 0), "aaa"},
		{"dir1/link", Symlink, 0, time.Time{}, "../target"},
		{"escape", File, 0, time.Time{}, "x"}, // cleaned as "/<name>", like boxo
		{"", File, 0, time.Time{}, "noname"},
	}
	for run := 0; run < 2; run++ {
		r := NewReader(strings.NewReader(body), "B")
		for i, w := range want {
			e, err := r.Next()
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			g := got{e.Path, e.Kind, e.Mode, e.Mtime, e.Target}
			if e.Kind == File {
				b, _ := io.ReadAll(e.Body)
				g.data = string(b)
			}
			if !g.mtime.Equal(w.mtime) {
				t.Fatalf("entry %d mtime %v, want %v", i, g.mtime, w.mtime)
			}
			g.mtime, w.mtime = time.Time{}, time.Time{}
			if g != w {
				t.Fatalf("entry %d: got %+v, want %+v", i, g, w)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("after last: %v", err)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	long := strings.Repeat("a", MaxSymlinkTarget+1)
	f := func(name, body string, want error) {
		t.Helper()
		r := NewReader(strings.NewReader(body), "B")
		var err error
		for err == nil {
			var e *Entry
			if e, err = r.Next(); err == nil && e.Body != nil {
				_, err = io.Copy(io.Discard, e.Body)
			}
		}
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
	}
	f("symlink too long", build("Content-Disposition: form-data; name=\"file\"; filename=\"l\"\r\nContent-Type: application/symlink\r\n\r\n"+long), ErrTooLong)
	f("truncated file", "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nabc", io.ErrUnexpectedEOF)
	f("no closing boundary", "--B\r\nContent-Disposition: form-data; filename=\"f\"\r\n\r\nabc\r\n", ErrMalformed)
	f("garbage", "hello", ErrMalformed)
	f("path too long", build("Content-Disposition: form-data; name=\"file\"; filename=\""+strings.Repeat("d/", MaxPathLength)+"\"\r\n\r\n"), ErrTooLong)
	f("bad content type", build("Content-Disposition: form-data; filename=\"f\"\r\nContent-Type: ;;;\r\n\r\n"), ErrMalformed)
}

func TestBoundary(t *testing.T) {
	for ct, ok := range map[string]bool{
		"multipart/form-data; boundary=abc": true,
		"multipart/mixed; boundary=abc":     true,
		"multipart/form-data":               false,
		"application/json":                  false,
		"":                                  false,
	} {
		b, err := Boundary(ct)
		if ok != (err == nil) || (ok && b != "abc") {
			t.Errorf("%q: %q %v", ct, b, err)
		}
	}
}

// FuzzReader: any body must end in EOF or an error, never a panic, and no
// entry may hold more than the documented limits in memory.
func FuzzReader(f *testing.F) {
	f.Add([]byte(build("Content-Disposition: form-data; name=\"file?mode=0644&mtime=1\"; filename=\"a%2Fb\"\r\n\r\nxyz")))
	f.Add([]byte(build("Content-Disposition: form-data; filename=\"d\"\r\nContent-Type: application/x-directory\r\n\r\n",
		"Content-Disposition: form-data; filename=\"d/l\"\r\nContent-Type: application/symlink\r\n\r\nt")))
	f.Add([]byte("--B\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := NewReader(bytes.NewReader(body), "B")
		for i := 0; ; i++ {
			e, err := r.Next()
			if err != nil {
				return
			}
			if len(e.Path) > MaxPathLength || len(e.Target) > MaxSymlinkTarget || strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") {
				t.Fatalf("entry %d out of bounds: %s", i, fmt.Sprintf("%q %q", e.Path, e.Target))
			}
			if e.Body != nil {
				if _, err := io.Copy(io.Discard, e.Body); err != nil {
					return
				}
			}
		}
	})
}

// A body cut inside a part's headers must not read as a clean end.
func TestTruncatedInHeaders(t *testing.T) {
	full := build("Content-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nx")
	for cut := 1; cut < len(full)-len("--B--\r\n"); cut++ {
		r := NewReader(strings.NewReader(full[:cut]), "B")
		var err error
		for err == nil {
			var e *Entry
			if e, err = r.Next(); err == nil && e.Body != nil {
				_, err = io.Copy(io.Discard, e.Body)
			}
		}
		if err == io.EOF {
			t.Fatalf("cut at %d of %d (%q) reads as a complete body", cut, len(full), full[:cut])
		}
	}
}
