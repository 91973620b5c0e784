package car

import (
	"encoding/binary"
	"errors"
	"fmt"

	cid "github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/datamodel"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
)

// linkCollector is a NodeAssembler that keeps only the links of what a codec
// decodes into it. The codecs (go-codec-dagpb, go-ipld-prime's dagcbor and
// dagjson) still parse, validate and budget the whole block exactly as they
// do for kubo, but nothing is built: decoding a 2 MiB dag-cbor list of
// zeros into basicnode allocates about 140 MB, into this nothing but the
// tokenizer's strings. It rejects a repeated map key, as basicnode does, so
// that a block accepted here decodes in kubo too.
//
// The assemblers it hands out are pointer-shaped structs, so converting them
// to interfaces does not allocate; the key sets of the open maps are reused
// from one map to the next at the same depth.
type linkCollector struct {
	links []cid.Cid
	keys  []map[string]struct{} // key sets, one per depth of open maps
	depth int                   // open maps
}

var errNotLink = errors.New("link is not a CID")

type (
	valueAssembler struct{ c *linkCollector }
	mapAssembler   struct{ c *linkCollector }
	listAssembler  struct{ c *linkCollector }
	keyAssembler   struct{ c *linkCollector }
)

func (c *linkCollector) assembler() datamodel.NodeAssembler { return valueAssembler{c} }

func (c *linkCollector) addKey(k string) error {
	set := c.keys[c.depth-1]
	if _, ok := set[k]; ok {
		return fmt.Errorf("repeated map key %q", k)
	}
	set[k] = struct{}{}
	return nil
}

func (a valueAssembler) BeginMap(int64) (datamodel.MapAssembler, error) {
	c := a.c
	if c.depth == len(c.keys) {
		c.keys = append(c.keys, make(map[string]struct{}))
	} else {
		clear(c.keys[c.depth])
	}
	c.depth++
	return mapAssembler(a), nil
}
func (a valueAssembler) BeginList(int64) (datamodel.ListAssembler, error) {
	return listAssembler(a), nil
}
func (valueAssembler) AssignNull() error         { return nil }
func (valueAssembler) AssignBool(bool) error     { return nil }
func (valueAssembler) AssignInt(int64) error     { return nil }
func (valueAssembler) AssignFloat(float64) error { return nil }
func (valueAssembler) AssignString(string) error { return nil }
func (valueAssembler) AssignBytes([]byte) error  { return nil }
func (a valueAssembler) AssignLink(l datamodel.Link) error {
	cl, ok := l.(cidlink.Link)
	if !ok {
		return errNotLink
	}
	a.c.links = append(a.c.links, cl.Cid)
	return nil
}
func (valueAssembler) AssignNode(datamodel.Node) error {
	return errors.New("linkCollector: AssignNode is not supported")
}
func (valueAssembler) Prototype() datamodel.NodePrototype { return basicnode.Prototype.Any }

func (a mapAssembler) AssembleKey() datamodel.NodeAssembler   { return keyAssembler(a) }
func (a mapAssembler) AssembleValue() datamodel.NodeAssembler { return valueAssembler(a) }
func (a mapAssembler) AssembleEntry(k string) (datamodel.NodeAssembler, error) {
	if err := a.c.addKey(k); err != nil {
		return nil, err
	}
	return valueAssembler(a), nil
}
func (a mapAssembler) Finish() error {
	a.c.depth--
	return nil
}
func (mapAssembler) KeyPrototype() datamodel.NodePrototype { return basicnode.Prototype.String }
func (mapAssembler) ValuePrototype(string) datamodel.NodePrototype {
	return basicnode.Prototype.Any
}

func (a listAssembler) AssembleValue() datamodel.NodeAssembler { return valueAssembler(a) }
func (listAssembler) Finish() error                            { return nil }
func (listAssembler) ValuePrototype(int64) datamodel.NodePrototype {
	return basicnode.Prototype.Any
}

var errKeyNotString = errors.New("map key is not a string")

func (a keyAssembler) AssignString(k string) error { return a.c.addKey(k) }
func (keyAssembler) BeginMap(int64) (datamodel.MapAssembler, error) {
	return nil, errKeyNotString
}
func (keyAssembler) BeginList(int64) (datamodel.ListAssembler, error) {
	return nil, errKeyNotString
}
func (keyAssembler) AssignNull() error                  { return errKeyNotString }
func (keyAssembler) AssignBool(bool) error              { return errKeyNotString }
func (keyAssembler) AssignInt(int64) error              { return errKeyNotString }
func (keyAssembler) AssignFloat(float64) error          { return errKeyNotString }
func (keyAssembler) AssignBytes([]byte) error           { return errKeyNotString }
func (keyAssembler) AssignLink(datamodel.Link) error    { return errKeyNotString }
func (keyAssembler) AssignNode(datamodel.Node) error    { return errKeyNotString }
func (keyAssembler) Prototype() datamodel.NodePrototype { return basicnode.Prototype.String }

// maxCBORNesting bounds checkCBORLengths's stack. go-ipld-prime refuses
// maps and lists nested deeper than 1024, and dag-cbor has only one tag,
// so nothing it accepts is refused here.
const maxCBORNesting = 4096

// checkCBORLengths fails if a definite length in the CBOR item at the start
// of b claims more bytes, or more entries, than b has left. refmt, the CBOR
// tokenizer under go-ipld-prime, allocates a string of the claimed length
// (up to 32 MiB) before it reads it, so a 30-byte header or block could
// otherwise cost 32 MiB; after this check no claim exceeds the block.
func checkCBORLengths(b []byte) error {
	pending := make([]uint64, 1, 16) // per open item: entries left; indefinite for ∞
	pending[0] = 1
	const indefinite = ^uint64(0)
	i := 0
	for len(pending) > 0 {
		top := len(pending) - 1
		if pending[top] == 0 {
			pending = pending[:top]
			continue
		}
		if i >= len(b) {
			return errors.New("CBOR ends early")
		}
		ib := b[i]
		i++
		if ib == 0xff {
			if pending[top] != indefinite {
				return fmt.Errorf("CBOR break at byte %d outside an indefinite-length item", i-1)
			}
			pending = pending[:top]
			continue
		}
		if pending[top] != indefinite {
			pending[top]--
		}
		major, info := ib>>5, ib&0x1f
		var arg uint64
		switch {
		case info < 24:
			arg = uint64(info)
		case info <= 27:
			n := 1 << (info - 24)
			if len(b)-i < n {
				return errors.New("CBOR ends early")
			}
			var buf [8]byte
			copy(buf[8-n:], b[i:i+n])
			arg = binary.BigEndian.Uint64(buf[:])
			i += n
		case info == 31 && major >= 2 && major <= 5:
			arg = indefinite
		default:
			return fmt.Errorf("invalid CBOR initial byte 0x%02x at byte %d", ib, i-1)
		}
		left := uint64(len(b) - i)
		switch major {
		case 2, 3: // byte and text strings
			if arg == indefinite {
				pending = append(pending, indefinite)
			} else if arg > left {
				return fmt.Errorf("CBOR string at byte %d claims %d bytes, %d are left", i, arg, left)
			} else {
				i += int(arg)
			}
		case 4: // arrays: each entry takes at least a byte
			if arg != indefinite && arg > left {
				return fmt.Errorf("CBOR array at byte %d claims %d entries, %d bytes are left", i, arg, left)
			}
			pending = append(pending, arg)
		case 5: // maps: a key and a value per entry
			if arg != indefinite && arg > left/2 {
				return fmt.Errorf("CBOR map at byte %d claims %d entries, %d bytes are left", i, arg, left)
			}
			if arg != indefinite {
				arg *= 2
			}
			pending = append(pending, arg)
		case 6: // a tag applies to one item
			pending = append(pending, 1)
		}
		if len(pending) > maxCBORNesting {
			return fmt.Errorf("CBOR nested deeper than %d", maxCBORNesting)
		}
	}
	return nil
}
