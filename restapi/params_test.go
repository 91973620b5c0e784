package restapi

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	mh "github.com/multiformats/go-multihash"
)

func parse(t *testing.T, q string) (*AddParams, error) {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return ParseAddParams(ValuesQuery(v))
}

// The Go client's default query (spec §4.1) must give kubo's defaults.
func TestParseClientDefaults(t *testing.T) {
	p, err := parse(t, "chunker=size-262144&cid-version=0&format=unixfs&hash=sha2-256&hidden=false&layout=&local=false&mode=recursive&name=&no-pin=false&nocopy=false&progress=false&raw-leaves=false&recursive=false&replication-max=0&replication-min=0&shard=false&shard-size=104857600&stream-channels=true&user-allocations=&wrap-with-directory=false")
	if err != nil {
		t.Fatal(err)
	}
	o := p.Unixfs
	if o.CidVersion != 0 || o.RawLeaves || o.HashFunc != mh.SHA2_256 || o.Trickle || o.Chunker != "size-262144" || !p.StreamChannels || p.Pin.ShardSize != 104857600 || p.Pin.Mode != "recursive" {
		t.Fatalf("%+v", p)
	}
}

func TestParseImplications(t *testing.T) {
	f := func(q string, check func(p *AddParams) bool) {
		t.Helper()
		p, err := parse(t, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !check(p) {
			t.Fatalf("%s: %+v", q, p.Unixfs)
		}
	}
	f("cid-version=1", func(p *AddParams) bool { return p.Unixfs.RawLeaves })
	f("cid-version=1&raw-leaves=false", func(p *AddParams) bool { return !p.Unixfs.RawLeaves })
	f("hash=blake3", func(p *AddParams) bool { return p.Unixfs.CidVersion == 1 && p.Unixfs.RawLeaves })
	f("hash=SHA2-512", func(p *AddParams) bool { return p.Unixfs.HashFunc == mh.SHA2_512 })
	f("profile=unixfs-v1-2025", func(p *AddParams) bool {
		return p.Unixfs.CidVersion == 1 && p.Unixfs.Chunker == "size-1048576" && p.Unixfs.MaxFileLinks == 1024
	})
	f("profile=unixfs-v1-2025&chunker=size-1000", func(p *AddParams) bool { return p.Unixfs.Chunker == "size-1000" })
	f("preserve-mode=true&cid-version=1", func(p *AddParams) bool { return !p.Unixfs.RawLeaves })
	f("replication=3", func(p *AddParams) bool { return p.Pin.ReplicationFactorMin == 3 && p.Pin.ReplicationFactorMax == 3 })
	f("user-allocations=bogus,12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw", func(p *AddParams) bool { return len(p.Pin.UserAllocations) == 1 })
	f("meta-a=1&meta-=2", func(p *AddParams) bool { return len(p.Pin.Metadata) == 1 && p.Pin.Metadata["a"] == "1" })
	f("layout=trickle", func(p *AddParams) bool { return p.Unixfs.Trickle })
	f("format=car", func(p *AddParams) bool { return p.Format == "car" })
}

func TestParseErrors(t *testing.T) {
	for q, msg := range map[string]string{
		"local=yes":                        "parameter local invalid",
		"stream-channels=2":                "parameter stream-channels invalid",
		"cid-version=2":                    "unknown CID version",
		"layout=x":                         "layout parameter is invalid",
		"format=x":                         "format parameter is invalid",
		"shard-size=-1":                    "parameter shard_size is invalid",
		"replication-min=a":                "parameter replication-min invalid",
		"expire-at=yesterday":              "expire-at cannot be parsed",
		"expire-in=1ms":                    "expire-in duration too short",
		"origins=/ip4/1.2.3.4/tcp/1":       "multiaddress does not contain peer ID",
		"hash=nope":                        "hash function name not known",
		"chunker=size-0":                   "chunker size must be greater than 0",
		"chunker=rabin-10-20-30":           "rabin min must be greater than 16",
		"inline=true&inline-limit=1000":    "inline-limit 1000 exceeds maximum",
		"max-hamt-fanout=100":              "max-hamt-fanout must be a power of 2",
		"max-file-links=0":                 "max-file-links must be positive",
		"max-file-links=1":                 "max-file-links must be at least 2 with the balanced layout",
		"profile=unixfs-v9":                "parameter profile invalid",
		"raw-leaves=true&preserve-mtime=1": "raw-leaves can't be used with UnixFS metadata",
		"pin-update=notacid":               "error decoding update option parameter",
		"name=" + strings.Repeat("n", 300): "parameter name invalid",
	} {
		_, err := parse(t, q)
		if err == nil || !errors.Is(err, ErrBadParam) || !strings.Contains(message(err), msg) {
			t.Errorf("%s: got %v, want %q", q, err, msg)
		}
	}
}

// FuzzParseAddParams: any query parses or fails with ErrBadParam, and a
// successful parse always yields options the importer can use.
func FuzzParseAddParams(f *testing.F) {
	f.Add("chunker=size-262144&cid-version=0&hash=sha2-256&layout=&raw-leaves=false")
	f.Add("profile=unixfs-v1-2025&inline=true&inline-limit=16&max-hamt-fanout=64")
	f.Add("chunker=rabin-16-32-64&hash=blake3&layout=trickle&meta-x=y&expire-in=2h")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		p, err := ParseAddParams(ValuesQuery(v))
		if err != nil {
			if !errors.Is(err, ErrBadParam) {
				t.Fatalf("error not classified as a bad parameter: %v", err)
			}
			return
		}
		o := p.Unixfs
		if o.CidBuilder() == nil || (o.CidVersion != 0 && o.CidVersion != 1) || o.MaxFileLinks <= 0 || (o.CidVersion == 0 && o.HashFunc != mh.SHA2_256) {
			t.Fatalf("unusable options from %q: %+v", q, o)
		}
	})
}
