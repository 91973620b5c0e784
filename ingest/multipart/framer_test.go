package multipart

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"mime/multipart"
	"slices"
	"strings"
	"testing"
	"time"
)

// choppyReader returns the body in reads of pseudo-random sizes, some of
// them empty, as a network connection does.
type choppyReader struct {
	b   []byte
	rnd *rand.Rand
}

func (c *choppyReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.b))
	switch c.rnd.IntN(4) {
	case 0:
		n = min(n, c.rnd.IntN(8))
	case 1:
		n = min(n, 1+c.rnd.IntN(200))
	}
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// readAllVaried reads r to the end with read sizes that take the framer's
// buffered path (small) and its direct path (large) in turn.
func readAllVaried(r io.Reader, rnd *rand.Rand) ([]byte, error) {
	var out []byte
	buf := make([]byte, 2*directReadMin)
	for {
		size := []int{1, 7, 4096, directReadMin, len(buf)}[rnd.IntN(5)]
		n, err := r.Read(buf[:size])
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

type parsedPart struct {
	header string
	body   []byte
	err    error // of reading the body
}

// parseStd parses body with mime/multipart, the reference.
func parseStd(body []byte, boundary string) ([]parsedPart, error) {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var parts []parsedPart
	for {
		p, err := mr.NextPart()
		if err != nil {
			return parts, err
		}
		b, err := io.ReadAll(p)
		parts = append(parts, parsedPart{header: headerString(p.Header), body: b, err: err})
		if err != nil {
			return parts, err
		}
	}
}

// parseFramer parses body with the framer, fed and drained irregularly.
func parseFramer(body []byte, boundary string, seed uint64) ([]parsedPart, error) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	f := newFramer(&choppyReader{b: body, rnd: rnd}, boundary)
	var parts []parsedPart
	for {
		h, err := f.next()
		if err != nil {
			return parts, err
		}
		b, err := readAllVaried(f.partReader(h), rnd)
		parts = append(parts, parsedPart{header: headerString(h), body: b, err: err})
		if err != nil {
			return parts, err
		}
	}
}

func headerString(h map[string][]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(h)) {
		b.WriteString(k + ":" + strings.Join(h[k], ",") + ";")
	}
	return b.String()
}

// checkSameAsStd: the framer finds the same parts, headers and bodies as
// mime/multipart, and fails where it fails. The one intended difference:
// a body that ends inside a part's header block is a clean end for
// mime/multipart (a bare io.EOF) and a truncated upload here.
func checkSameAsStd(t *testing.T, body []byte, seed uint64) {
	t.Helper()
	want, wantErr := parseStd(body, "B")
	got, gotErr := parseFramer(body, "B", seed)
	if len(got) != len(want) {
		t.Fatalf("%d parts (%v), mime/multipart %d (%v)", len(got), gotErr, len(want), wantErr)
	}
	for i := range want {
		if got[i].header != want[i].header || !bytes.Equal(got[i].body, want[i].body) || (got[i].err == nil) != (want[i].err == nil) {
			t.Fatalf("part %d: got %q %q %v, mime/multipart %q %q %v", i, got[i].header, got[i].body, got[i].err, want[i].header, want[i].body, want[i].err)
		}
	}
	switch {
	case wantErr == io.EOF && gotErr == io.EOF:
	case wantErr == io.EOF && errors.Is(gotErr, io.ErrUnexpectedEOF) && (len(got) == 0 || got[len(got)-1].err == nil):
	case wantErr != io.EOF && gotErr != io.EOF:
	default:
		t.Fatalf("ends with %v, mime/multipart with %v", gotErr, wantErr)
	}
}

var framerSeeds = []string{
	build("Content-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nxyz", "Content-Type: text/plain\r\n\r\n"),
	"preamble line\r\n--B\r\nA: 1\r\n\r\nbody\r\n--B--\r\n",
	"--B\nA: 1\n\nlf body\n--B\nA: 2\n\n\n--B--\n",
	"--B  \r\nA: 1\r\n\r\npadded\r\n--B\t\r\n\r\nx\r\n--B--  \r\n",
	"--B\r\nA: 1\r\n\r\n--Bx --B-x \r\n--BB\r\n--B-\r\n--B--",
	"--B\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n--B--\r\n",
	"--B\r\nA: 1\r\n\r\n\r\n--B\r\n\r\n--B--",
	"--B\r\nA: 1\r\n\r\ntruncated\r\n--",
	"--B\r\nA: 1\r\n",
	"--B\r\n\r\n" + strings.Repeat("\r\n-", 3000) + "\r\n--B--\r\n",
	"--B\r\n\r\n" + strings.Repeat("z", 5000) + "\r\n--B\r\n\r\n\r\n--B--\r\n",
	strings.Repeat("p", 5000) + "\r\n--B\r\n\r\nx\r\n--B--\r\n",
	"--B\r\n A: continued\r\n\r\nx\r\n--B--\r\n",
	"--B\r\nA: 1\r\nno colon\r\n\r\nx\r\n--B--\r\n",
	"--B\r\n\r\nx\r\n--B\r\njunk",
	"--B--",
}

func TestFramerMatchesStdlib(t *testing.T) {
	for i, s := range framerSeeds {
		for seed := range uint64(20) {
			checkSameAsStd(t, []byte(s), seed+uint64(i)*100)
		}
	}
	// Large parts with delimiter look-alikes at every offset around the
	// framer's read sizes.
	rnd := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 20; i++ {
		var b bytes.Buffer
		for p := 0; p < 3; p++ {
			b.WriteString("--B\r\nContent-Type: application/octet-stream\r\n\r\n")
			data := make([]byte, rnd.IntN(3*directReadMin))
			for j := range data {
				data[j] = "\r\n-Bx"[rnd.IntN(5)]
			}
			b.Write(data)
			b.WriteString("\r\n")
		}
		b.WriteString("--B--\r\n")
		checkSameAsStd(t, b.Bytes(), uint64(i))
	}
}

func FuzzFramerMatchesStdlib(f *testing.F) {
	for _, s := range framerSeeds {
		f.Add([]byte(s), uint64(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, seed uint64) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			parseFramer(body, "B", seed)
			parseStd(body, "B")
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("framer hangs on %q (seed %d)", body, seed)
		}
		checkSameAsStd(t, body, seed)
	})
}

// TestFramerLongBoundary: with a boundary as clients make them (the Go
// client's is 60 hex digits), parts of random and delimiter-like content
// split exactly as mime/multipart splits them.
func TestFramerLongBoundary(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	boundary := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
	for i := 0; i < 30; i++ {
		var b bytes.Buffer
		for range 1 + rnd.IntN(3) {
			b.WriteString("--" + boundary + "\r\nContent-Type: application/octet-stream\r\n\r\n")
			data := make([]byte, rnd.IntN(600<<10))
			for j := range data {
				if rnd.IntN(2) == 0 {
					data[j] = byte(rnd.Uint32())
				} else {
					data[j] = ("\r\n--" + boundary)[rnd.IntN(len(boundary)+4)]
				}
			}
			for range rnd.IntN(20) { // near misses
				if len(data) > len(boundary)+8 {
					at := rnd.IntN(len(data) - len(boundary) - 8)
					copy(data[at:], "\r\n--"+boundary[:rnd.IntN(len(boundary))]+"x")
				}
			}
			b.Write(data)
			b.WriteString("\r\n")
		}
		b.WriteString("--" + boundary + "--\r\n")
		want, wantErr := parseStd(b.Bytes(), boundary)
		got, gotErr := parseFramer(b.Bytes(), boundary, uint64(i))
		if wantErr != io.EOF || gotErr != io.EOF || len(got) != len(want) {
			t.Fatalf("body %d: %d parts (%v), mime/multipart %d (%v)", i, len(got), gotErr, len(want), wantErr)
		}
		for j := range want {
			if !bytes.Equal(got[j].body, want[j].body) {
				t.Fatalf("body %d part %d differs (%d vs %d bytes)", i, j, len(got[j].body), len(want[j].body))
			}
		}
	}
}

// TestFramerLimits: mime/multipart's limits hold: an empty boundary and a
// part with more than 10000 header fields are errors.
func TestFramerLimits(t *testing.T) {
	if _, err := newFramer(strings.NewReader("--\r\n\r\nx\r\n----\r\n"), "").next(); err == nil {
		t.Fatal("empty boundary accepted")
	}
	many := "--B\r\n" + strings.Repeat("A: 1\r\n", maxHeaders+1) + "\r\nx\r\n--B--\r\n"
	if _, err := newFramer(strings.NewReader(many), "B").next(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("%d header fields: %v", maxHeaders+1, err)
	}
	ok := "--B\r\n" + strings.Repeat("A: 1\r\n", maxHeaders) + "\r\nx\r\n--B--\r\n"
	if _, err := newFramer(strings.NewReader(ok), "B").next(); err != nil {
		t.Fatalf("%d header fields: %v", maxHeaders, err)
	}
}
