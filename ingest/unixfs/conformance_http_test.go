package unixfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	ingestmp "github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/internal/kubotest"
)

// The HTTP part of the conformance suite: uploads that no file tree can
// produce (parts named "", "." or "..") or whose interest is kubo's error
// (hash=identity over its limit), sent as the same multipart body to kubo's
// /api/v0/add and through unixfs.Import. kubo is the oracle: where it
// answers, the (name, CID) pairs must be equal; where it fails, Import must
// fail too, with the sentinel the case names.

// httpPart is one part of an upload body.
type httpPart struct {
	filename, contentType, body string
}

func filePart(name, body string) httpPart { return httpPart{name, "application/octet-stream", body} }
func dirPart(name string) httpPart        { return httpPart{name, "application/x-directory", ""} }
func linkPart(name, target string) httpPart {
	return httpPart{name, "application/symlink", target}
}

type httpCase struct {
	name  string
	query string // /add options, as in kubo's HTTP API
	parts []httpPart
	// wantErr is the sentinel Import's error must wrap when kubo refuses
	// the upload; nil when kubo accepts it. The case fails if kubo
	// disagrees with it, so that the list stays true to the oracle.
	wantErr error
}

func httpCases() []httpCase {
	bytesOf := func(n int) string { return strings.Repeat("i", n) }
	const wrap = "wrap-with-directory=true"
	const identity = "hash=identity"
	cases := []httpCase{
		// Parts without a name: boxo cleans "", "." and ".." to "/", and
		// kubo names a file or symlink at "/" by its CID (Adder.addNode).
		{name: "wrap empty name", query: wrap, parts: []httpPart{filePart("", "content-1")}},
		{name: "wrap dot", query: wrap, parts: []httpPart{filePart(".", "content-1")}},
		{name: "wrap dot dot", query: wrap, parts: []httpPart{filePart("..", "content-1")}},
		{name: "wrap slash", query: wrap, parts: []httpPart{filePart("/", "content-1")}},
		{name: "wrap empty name and x", query: wrap, parts: []httpPart{filePart("", "content-1"), filePart("x", "content-2")}},
		{name: "wrap dot and dot dot", query: wrap, parts: []httpPart{filePart(".", "content-1"), filePart("..", "content-2")}},
		{name: "wrap empty name v1", query: wrap + "&cid-version=1", parts: []httpPart{filePart("", "content-1"), filePart("x", "content-2")}},
		{name: "wrap empty file", query: wrap, parts: []httpPart{filePart("", "")}},
		{name: "wrap symlink without name", query: wrap, parts: []httpPart{linkPart("", "target")}},
		{name: "wrap d/..", query: wrap, parts: []httpPart{dirPart("d"), filePart("d/..", "zz")}},
		{name: "dot", parts: []httpPart{filePart(".", "content-1")}},
		{name: "empty name and x", parts: []httpPart{filePart("", "content-1"), filePart("x", "content-2")}},
		{name: "symlink without name", parts: []httpPart{linkPart("", "target")}},
		{name: "d/..", parts: []httpPart{dirPart("d"), filePart("d/..", "zz")}},
		// Without wrap a directory part without a name is "/": every later
		// part is inside it, and it is the root.
		{name: "directory without name", parts: []httpPart{dirPart(""), filePart("x", "xx")}},
		{name: "file then directory without name", parts: []httpPart{filePart("a", "aa"), dirPart(""), filePart("x", "xx")}},
		{name: "directory without name holding one", parts: []httpPart{dirPart(""), filePart("", "zz"), filePart("sub/y", "yy")}},
		// kubo: "no path given to Mkdir".
		{name: "wrap directory without name", query: wrap, parts: []httpPart{dirPart(""), filePart("x", "xx")}, wantErr: unixfs.ErrBadEntry},
		{name: "directory without name twice", parts: []httpPart{dirPart(""), dirPart(".")}, wantErr: unixfs.ErrBadEntry},
		// kubo: "directory already has entry by that name".
		{name: "wrap two equal files without name", query: wrap, parts: []httpPart{filePart("", "same"), filePart(".", "same")}, wantErr: unixfs.ErrBadEntry},

		// hash=identity: kubo fails on the first block whose identity CID
		// would carry more than 128 bytes, the root directory of its MFS
		// included; an unwrapped file is linked there under its CID
		// string, so a file of 41 bytes already fails (40 just fits).
		{name: "identity empty", query: identity, parts: []httpPart{filePart("f", "")}},
		{name: "identity 10 bytes", query: identity, parts: []httpPart{filePart("f", bytesOf(10))}},
		{name: "identity 40 bytes", query: identity, parts: []httpPart{filePart("f", bytesOf(40))}},
		{name: "identity 41 bytes", query: identity, parts: []httpPart{filePart("f", bytesOf(41))}, wantErr: ingest.ErrCIDRefused},
		{name: "identity 129 bytes", query: identity, parts: []httpPart{filePart("f", bytesOf(129))}, wantErr: ingest.ErrCIDRefused},
		{name: "identity two chunks", query: identity, parts: []httpPart{filePart("f", bytesOf(300<<10))}, wantErr: ingest.ErrCIDRefused},
		// Small leaves do not help: their parent links them all.
		{name: "identity small chunks", query: identity + "&chunker=size-10", parts: []httpPart{filePart("f", bytesOf(100))}, wantErr: ingest.ErrCIDRefused},
		{name: "identity symlink", query: identity, parts: []httpPart{linkPart("l", "t")}},
		{name: "identity long symlink", query: identity, parts: []httpPart{linkPart("l", bytesOf(60))}, wantErr: ingest.ErrCIDRefused},
		{name: "identity wrap small", query: identity + "&" + wrap, parts: []httpPart{filePart("a", "1"), filePart("b", "2")}},
		{name: "identity wrap over", query: identity + "&" + wrap, parts: []httpPart{filePart("a", bytesOf(30)), filePart("b", bytesOf(30)), filePart("c", bytesOf(30))}, wantErr: ingest.ErrCIDRefused},
		{name: "identity directory small", query: identity, parts: []httpPart{dirPart("d"), filePart("d/a", "1")}},
		{name: "identity directory over", query: identity, parts: []httpPart{dirPart("d"), filePart("d/a", bytesOf(60)), filePart("d/b", bytesOf(60))}, wantErr: ingest.ErrCIDRefused},
		{name: "identity without name", query: identity + "&" + wrap, parts: []httpPart{filePart("", "1")}},
	}
	return cases
}

// httpBody is the multipart body of parts, as a client of kubo's HTTP API
// sends it.
func httpBody(t *testing.T, parts []httpPart) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, url.QueryEscape(p.filename)))
		h.Set("Content-Type", p.contentType)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, p.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.Boundary()
}

// kuboHTTPAdd posts body to kubo's /api/v0/add and returns its (name, CID)
// pairs in order, or kubo's error (an error status, or the X-Stream-Error
// trailer of a stream that had started).
func kuboHTTPAdd(t *testing.T, d *kubotest.Daemon, query string, body []byte, boundary string) ([]kubotest.AddEvent, error) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q.Set("pin", "false")
	q.Set("progress", "false")
	req, err := http.NewRequest(http.MethodPost, d.URL()+"/api/v0/add?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("cannot call kubo's add: %v", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("cannot read kubo's add answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubo: HTTP %s: %s", resp.Status, bytes.TrimSpace(out))
	}
	if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
		return nil, fmt.Errorf("kubo: %s", msg)
	}
	events, err := kubotest.ParseAddOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	return events, nil
}

// httpOptions sets Options from the /add query of a case, as the REST
// layer does for the options the cases use.
func httpOptions(t *testing.T, query string) unixfs.Options {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	o := unixfs.DefaultOptions()
	for k, v := range q {
		switch k {
		case "wrap-with-directory":
			o.Wrap = v[0] == "true"
		case "hash":
			o.HashFunc = mh.Names[v[0]]
		case "chunker":
			o.Chunker = v[0]
		case "cid-version":
			if o.CidVersion, err = strconv.Atoi(v[0]); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("httpOptions: unknown option %q", k)
		}
	}
	if err := o.Resolve(); err != nil {
		t.Fatalf("cannot resolve %q: %v", query, err)
	}
	return o
}

func TestConformanceHTTP(t *testing.T) {
	kubotest.Binary(t) // skip (or fail in CI) before creating anything
	t.Parallel()
	d := kubotest.StartDaemon(t, kubotest.NewRepo(t))
	pool := ingest.NewHashPool(2)
	t.Cleanup(pool.Stop)
	for _, c := range httpCases() {
		t.Run(c.name, func(t *testing.T) {
			body, boundary := httpBody(t, c.parts)
			events, kuboErr := kuboHTTPAdd(t, d, c.query, body, boundary)
			if (kuboErr != nil) != (c.wantErr != nil) {
				t.Fatalf("kubo: events %v, error %v; the case expects an error: %v", events, kuboErr, c.wantErr != nil)
			}
			o := httpOptions(t, c.query)
			for run := range 2 { // a second run catches state left in pooled objects
				var outs []unixfs.Output
				roots, err := unixfs.Import(context.Background(), ingestmp.NewReader(bytes.NewReader(body), boundary), &o, pool, ingest.DiscardSink{}, func(out unixfs.Output) error {
					outs = append(outs, out)
					return nil
				})
				if kuboErr != nil {
					if !errors.Is(err, c.wantErr) {
						t.Fatalf("run %d: Import error = %v, want %v (%v)", run, err, c.wantErr, kuboErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("run %d: Import error = %v, kubo accepts the upload", run, err)
				}
				got := pairs(outs, func(o unixfs.Output) string { return fmt.Sprintf("%q %s", o.Name, o.Cid) })
				want := pairs(events, func(e kubotest.AddEvent) string { return fmt.Sprintf("%q %s", e.Name, e.Hash) })
				if !slices.Equal(got, want) {
					t.Fatalf("run %d: outputs differ from kubo's\n%s", run, diffPairs(got, want))
				}
				if last := events[len(events)-1].Hash; roots[len(roots)-1].String() != last {
					t.Fatalf("run %d: last root %s, kubo %s", run, roots[len(roots)-1], last)
				}
			}
		})
	}
}
