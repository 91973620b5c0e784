package restapi

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
)

// FuzzParsePinOptions: any query parses or fails with ErrBadParam, and a
// successful parse stays within the documented bounds.
func FuzzParsePinOptions(f *testing.F) {
	f.Add("expire-at=2027-01-02T03:04:05.123Z&meta-a=b&mode=direct&name=x&replication-max=2&replication-min=1&shard-size=0&user-allocations=")
	f.Add("replication=3&origins=/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw&expire-in=1h")
	f.Add("pin-update=QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o&user-allocations=12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw,bogus")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		var po PinOptions
		if err := parsePinOptions(ValuesQuery(v), &po); err != nil {
			if !errors.Is(err, ErrBadParam) {
				t.Fatalf("error not classified as a bad parameter: %v", err)
			}
			return
		}
		if po.Mode != pinner.ModeRecursive && po.Mode != pinner.ModeDirect {
			t.Fatalf("mode %q from %q", po.Mode, q)
		}
		if len(po.Name) > maxNameLen || len(po.Metadata) > maxMetaEntries || po.Metadata == nil {
			t.Fatalf("unbounded or nil name/metadata from %q: %+v", q, po)
		}
		for _, a := range po.UserAllocations {
			if !validPeerID(a) {
				t.Fatalf("invalid peer ID %q kept from %q", a, q)
			}
		}
		for _, o := range po.Origins {
			if !strings.Contains(o, "/p2p/") {
				t.Fatalf("origin without /p2p/ kept from %q", q)
			}
		}
	})
}

// FuzzRouter sends any method, path and query to the router of a real
// Server (embedded mode). Whatever arrives, it must not panic, and it must
// answer with a status the spec allows and, when there is a body, the JSON
// error object or a JSON value.
func FuzzRouter(f *testing.F) {
	for _, s := range []string{
		"GET /pins/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o?local=true",
		"POST /pins/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o/a/b?name=x",
		"DELETE /pins/ipns/example.com",
		"POST /pins/recover",
		"GET //id",
		"GET /allocations?filter=pin,bogus",
		"DELETE /peers/12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw",
		"GET /monitor/metrics/freespace",
		"PUT /pins/x/recover/",
		"GET /pins?cids=a,b&filter=error",
	} {
		m, rest, _ := strings.Cut(s, " ")
		f.Add(m, rest)
	}
	store, err := localstore.Open(f.TempDir(), localstore.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	pool := ingest.NewHashPool(1)
	f.Cleanup(pool.Stop)
	srv, err := New(Config{PeerID: testPeerID, Store: store, Pins: pinner.NewStore(store.Datastore(), pinner.StoreOptions{}), Pool: pool})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Shutdown() })
	allowed := map[int]bool{200: true, 204: true, 301: true, 307: true, 400: true, 404: true, 405: true, 503: true}
	f.Fuzz(func(t *testing.T, method, uri string) {
		if method == "" || strings.ContainsAny(method, " \r\n\t") || !strings.HasPrefix(uri, "/") || strings.ContainsAny(uri, " \r\n\t#") {
			return
		}
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(uri)
		if method == "POST" && strings.HasPrefix(uri, "/add") {
			return // /add reads a body: covered by the add fuzzers
		}
		srv.handle(&ctx)
		code := ctx.Response.StatusCode()
		if !allowed[code] {
			t.Fatalf("%s %s: status %d: %s", method, uri, code, ctx.Response.Body())
		}
		if b := ctx.Response.Body(); len(b) > 0 && code >= 400 {
			var e errorBody
			if err := json.Unmarshal(b, &e); err != nil || e.Code != code || e.Message == "" {
				t.Fatalf("%s %s: %d with body %q, not the error object", method, uri, code, b)
			}
		}
	})
}
