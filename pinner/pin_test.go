package pinner

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
)

const (
	testPeer = "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw"
	testV0   = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
	testV1   = "bafybeidskjjd4zmr7oh6ku6wp72vvbxyibcli2r6if3ocdcy7jjjusvl2u"
	testRaw  = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
)

func mustCid(t *testing.T, s string) CID {
	t.Helper()
	c, err := cid.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return CID{c}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// TestPinJSON checks the exact bytes of Pin's JSON against literals derived
// from spec §5.4, and that decoding each literal and encoding it again
// gives the same bytes.
func TestPinJSON(t *testing.T) {
	f := func(name string, p Pin, want string) {
		t.Helper()
		got, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		if string(got) != want {
			t.Fatalf("%s: Marshal:\n got %s\nwant %s", name, got, want)
		}
		var back Pin
		if err := json.Unmarshal([]byte(want), &back); err != nil {
			t.Fatalf("%s: Unmarshal: %v", name, err)
		}
		again, err := json.Marshal(back)
		if err != nil {
			t.Fatalf("%s: Marshal after Unmarshal: %v", name, err)
		}
		if string(again) != want {
			t.Fatalf("%s: round trip:\n got %s\nwant %s", name, again, want)
		}
	}

	// §5.4 "Verified emission", with real values for the elided peer IDs.
	f("spec example", Pin{
		ReplicationFactorMin: 1,
		ReplicationFactorMax: 2,
		Name:                 "myfile",
		Mode:                 ModeRecursive,
		UserAllocations:      []string{testPeer},
		ExpireAt:             mustTime(t, "2026-11-26T02:09:51.774747986Z"),
		Metadata:             map[string]string{"owner": "alice"},
		Cid:                  mustCid(t, testV0),
		Type:                 TypePin,
		Allocations:          []string{testPeer},
		MaxDepth:             -1,
		Timestamp:            mustTime(t, "2026-11-25T02:09:51.774749548Z"),
	}, `{"replication_factor_min":1,"replication_factor_max":2,"name":"myfile","mode":"recursive","shard_size":0,`+
		`"user_allocations":["`+testPeer+`"],"expire_at":"2026-11-26T02:09:51.774747986Z","metadata":{"owner":"alice"},`+
		`"pin_update":null,"origins":null,"cid":"`+testV0+`","type":"pin","allocations":["`+testPeer+`"],`+
		`"max_depth":-1,"reference":null,"timestamp":"2026-11-25T02:09:51.774749548Z"}`)

	// §5.4 "read back from the pinset": second precision, a zone offset,
	// origins [] and user_allocations null.
	f("read back from pinset", Pin{
		ReplicationFactorMin: 1,
		ReplicationFactorMax: 2,
		Name:                 "myfile",
		Mode:                 ModeRecursive,
		ExpireAt:             mustTime(t, "2026-11-26T02:09:51+01:00"),
		Metadata:             map[string]string{"owner": "alice"},
		Origins:              []string{},
		Cid:                  mustCid(t, testV0),
		Type:                 TypePin,
		Allocations:          []string{testPeer},
		MaxDepth:             -1,
		Timestamp:            mustTime(t, "2026-11-25T02:09:51+01:00"),
	}, `{"replication_factor_min":1,"replication_factor_max":2,"name":"myfile","mode":"recursive","shard_size":0,`+
		`"user_allocations":null,"expire_at":"2026-11-26T02:09:51+01:00","metadata":{"owner":"alice"},`+
		`"pin_update":null,"origins":[],"cid":"`+testV0+`","type":"pin","allocations":["`+testPeer+`"],`+
		`"max_depth":-1,"reference":null,"timestamp":"2026-11-25T02:09:51+01:00"}`)

	// Pinned everywhere (replication -1): allocations [] not null; a fresh
	// pin without meta-* has metadata {}; no expiry is the zero time.
	f("everywhere, direct, CIDv1", Pin{
		ReplicationFactorMin: -1,
		ReplicationFactorMax: -1,
		Mode:                 ModeDirect,
		Metadata:             map[string]string{},
		Cid:                  mustCid(t, testRaw),
		Type:                 TypePin,
		Allocations:          []string{},
		MaxDepth:             0,
		Timestamp:            mustTime(t, "2026-11-25T02:09:51.000000001Z"),
	}, `{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"direct","shard_size":0,`+
		`"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":{},`+
		`"pin_update":null,"origins":null,"cid":"`+testRaw+`","type":"pin","allocations":[],`+
		`"max_depth":0,"reference":null,"timestamp":"2026-11-25T02:09:51.000000001Z"}`)

	f("pin update and reference", Pin{
		Mode:      ModeRecursive,
		PinUpdate: mustCid(t, testV0),
		Cid:       mustCid(t, testV1),
		Type:      TypeShard,
		MaxDepth:  1,
		Reference: mustCid(t, testRaw),
	}, `{"replication_factor_min":0,"replication_factor_max":0,"name":"","mode":"recursive","shard_size":0,`+
		`"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,`+
		`"pin_update":"`+testV0+`","origins":null,"cid":"`+testV1+`","type":"shard-pin","allocations":null,`+
		`"max_depth":1,"reference":"`+testRaw+`","timestamp":"0001-01-01T00:00:00Z"}`)

	f("zero", Pin{}, `{"replication_factor_min":0,"replication_factor_max":0,"name":"","mode":"","shard_size":0,`+
		`"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,`+
		`"pin_update":null,"origins":null,"cid":null,"type":"","allocations":null,`+
		`"max_depth":0,"reference":null,"timestamp":"0001-01-01T00:00:00Z"}`)
}

// TestPinJSONSpecIndented decodes the indented example of §5.4 verbatim
// (apart from the elided peer IDs).
func TestPinJSONSpecIndented(t *testing.T) {
	spec := `{
  "replication_factor_min": 1,
  "replication_factor_max": 2,
  "name": "myfile",
  "mode": "recursive",
  "shard_size": 0,
  "user_allocations": ["12D3KooW..."],
  "expire_at": "2026-11-26T02:09:51.774747986Z",
  "metadata": {"owner": "alice"},
  "pin_update": null,
  "origins": null,
  "cid": "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
  "type": "pin",
  "allocations": ["12D3KooW..."],
  "max_depth": -1,
  "reference": null,
  "timestamp": "2026-11-25T02:09:51.774749548Z"
}`
	var p Pin
	if err := json.Unmarshal([]byte(spec), &p); err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// MarshalIndent puts array elements and map entries on their own lines;
	// compare with all whitespace removed.
	strip := func(s string) string { return strings.Join(strings.Fields(s), "") }
	if strip(string(got)) != strip(spec) {
		t.Fatalf("re-encoded spec example differs:\n%s", got)
	}
}

func TestCIDJSON(t *testing.T) {
	f := func(in string, want string, wantErr bool) {
		t.Helper()
		var c CID
		err := json.Unmarshal([]byte(in), &c)
		if wantErr {
			if err == nil {
				t.Fatalf("Unmarshal(%s): got %s, want an error", in, c)
			}
			return
		}
		if err != nil {
			t.Fatalf("Unmarshal(%s): %v", in, err)
		}
		got, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%s): %v", in, err)
		}
		if string(got) != want {
			t.Fatalf("Unmarshal+Marshal(%s) = %s; want %s", in, got, want)
		}
	}
	f(`"`+testV0+`"`, `"`+testV0+`"`, false)
	f(`"`+testV1+`"`, `"`+testV1+`"`, false)
	f(`null`, `null`, false)
	f(`""`, `null`, false)
	f(`{"/":"`+testV1+`"}`, `"`+testV1+`"`, false)
	// A v1 CID in another base comes back in its default base32.
	c := mustCid(t, testV1)
	b58, err := c.StringOfBase('z')
	if err != nil {
		t.Fatal(err)
	}
	f(`"`+b58+`"`, `"`+testV1+`"`, false)
	f(`"not-a-cid"`, ``, true)
	f(`42`, ``, true)
}
