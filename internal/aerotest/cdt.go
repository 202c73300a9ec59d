package aerotest

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Map operations (CDT modify, wire op 4) on unordered maps: put (67) with the default map
// policy, and remove-by-key (76) returning nothing; and one map read (CDT read, wire op 3):
// size (96). That is what a client needs to change one entry of a map bin atomically, without
// reading the record first, and to count the entries without reading them. Other CDT
// operations, map orders, write flags and contexts are refused with UNSUPPORTED_FEATURE.
//
// A map bin is particle type 19 holding a msgpack map whose keys and values are kept as the
// client encoded them (a string carries Aerospike's particle-type byte inside the msgpack
// string), so a key is found by comparing its encoded bytes, as the server does for keys of
// one type.

const (
	opCDTRead       = 3
	opCDTModify     = 4
	particleInteger = 1
	particleMap     = 19
	resultBinType   = 12 // BIN_TYPE_ERROR: the bin holds something other than a map

	cdtMapPut         = 67
	cdtMapRemoveByKey = 76
	cdtMapSize        = 96
	cdtReturnNone     = 0
)

var errMsgpack = errors.New("malformed msgpack")

// mapOp is a parsed map operation.
type mapOp struct {
	code       int64
	key, value []byte // encoded msgpack elements
}

// parseMapOp decodes a CDT modify operation's value: the operation code as a 16-bit integer,
// then a msgpack array of its arguments. (With a context the value is a msgpack array instead.)
func parseMapOp(b []byte) (mapOp, byte) {
	if len(b) < 2 {
		return mapOp{}, resultParameter
	}
	if b[0] >= 0x90 {
		return mapOp{}, resultUnsupported // [0xff, context, [op, args...]]
	}
	code := int64(binary.BigEndian.Uint16(b))
	if len(b) == 2 {
		if code == cdtMapSize {
			return mapOp{code: code}, resultOK
		}
		return mapOp{}, resultUnsupported
	}
	n, rest, err := msgpackArrayHeader(b[2:])
	if err != nil {
		return mapOp{}, resultParameter
	}
	args, err := msgpackElements(rest, n)
	if err != nil {
		return mapOp{}, resultParameter
	}
	switch {
	case code == cdtMapPut && (len(args) == 2 || len(args) == 3):
		if len(args) == 3 {
			if attr, ok := msgpackInt(args[2]); !ok || attr != 0 {
				return mapOp{}, resultUnsupported // an ordered map
			}
		}
		return mapOp{code: code, key: args[0], value: args[1]}, resultOK
	case code == cdtMapRemoveByKey && len(args) == 2:
		if rt, ok := msgpackInt(args[0]); !ok || rt != cdtReturnNone {
			return mapOp{}, resultUnsupported
		}
		return mapOp{code: code, key: args[1]}, resultOK
	}
	return mapOp{}, resultUnsupported
}

// readMap answers a map read: the size of a map bin (nothing for a missing bin).
func readMap(bins []bin, o op) ([]bin, byte) {
	mo, code := parseMapOp(o.value)
	if code != resultOK {
		return nil, code
	}
	if mo.code != cdtMapSize {
		return nil, resultUnsupported
	}
	for _, b := range bins {
		if b.name != o.name {
			continue
		}
		if b.ptype != particleMap {
			return nil, resultBinType
		}
		entries, err := mapEntries(b.data)
		if err != nil {
			return nil, resultParameter
		}
		size := binary.BigEndian.AppendUint64(nil, uint64(len(entries)))
		return []bin{{name: o.name, ptype: particleInteger, data: size}}, resultOK
	}
	return nil, resultOK
}

// applyMapOp changes a map bin; a missing bin is an empty map. It returns the bins and what the
// operation answers (put: the map's new size; remove with return type none: nothing).
func applyMapOp(bins []bin, o op) ([]bin, []bin, byte) {
	mo, code := parseMapOp(o.value)
	if code != resultOK {
		return bins, nil, code
	}
	if mo.code == cdtMapSize {
		return bins, nil, resultParameter // a read sent as a modify
	}
	i := -1
	var entries [][2][]byte
	for j := range bins {
		if bins[j].name == o.name {
			i = j
		}
	}
	if i >= 0 {
		if bins[i].ptype != particleMap {
			return bins, nil, resultBinType
		}
		var err error
		if entries, err = mapEntries(bins[i].data); err != nil {
			return bins, nil, resultParameter
		}
	}
	if i < 0 && mo.code != cdtMapPut {
		return bins, nil, resultOK // nothing to remove from a missing bin; none is created
	}
	entries = slicesDeleteKey(entries, mo.key)
	if mo.code == cdtMapPut {
		entries = append(entries, [2][]byte{mo.key, mo.value})
	}
	nb := bin{name: o.name, ptype: particleMap, data: encodeMap(entries)}
	if i >= 0 {
		bins[i] = nb
	} else {
		bins = append(bins, nb)
	}
	if mo.code != cdtMapPut {
		return bins, nil, resultOK
	}
	size := binary.BigEndian.AppendUint64(nil, uint64(len(entries)))
	return bins, []bin{{name: o.name, ptype: particleInteger, data: size}}, resultOK
}

func slicesDeleteKey(entries [][2][]byte, key []byte) [][2][]byte {
	out := entries[:0:0]
	for _, e := range entries {
		if !bytes.Equal(e[0], key) {
			out = append(out, e)
		}
	}
	return out
}

// mapEntries splits an encoded msgpack map into its encoded keys and values.
func mapEntries(b []byte) ([][2][]byte, error) {
	n, rest, err := msgpackMapHeader(b)
	if err != nil {
		return nil, err
	}
	elems, err := msgpackElements(rest, 2*n)
	if err != nil {
		return nil, err
	}
	out := make([][2][]byte, n)
	for i := range out {
		out[i] = [2][]byte{elems[2*i], elems[2*i+1]}
	}
	return out, nil
}

func encodeMap(entries [][2][]byte) []byte {
	var out []byte
	switch n := len(entries); {
	case n < 16:
		out = append(out, 0x80|byte(n))
	case n < 1<<16:
		out = binary.BigEndian.AppendUint16(append(out, 0xde), uint16(n))
	default:
		out = binary.BigEndian.AppendUint32(append(out, 0xdf), uint32(n))
	}
	for _, e := range entries {
		out = append(append(out, e[0]...), e[1]...)
	}
	return out
}

func msgpackArrayHeader(b []byte) (int, []byte, error) {
	switch {
	case len(b) == 0:
	case b[0]&0xf0 == 0x90:
		return int(b[0] & 0x0f), b[1:], nil
	case b[0] == 0xdc && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:])), b[3:], nil
	case b[0] == 0xdd && len(b) >= 5:
		return int(binary.BigEndian.Uint32(b[1:])), b[5:], nil
	}
	return 0, nil, errMsgpack
}

func msgpackMapHeader(b []byte) (int, []byte, error) {
	switch {
	case len(b) == 0:
	case b[0]&0xf0 == 0x80:
		return int(b[0] & 0x0f), b[1:], nil
	case b[0] == 0xde && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:])), b[3:], nil
	case b[0] == 0xdf && len(b) >= 5:
		return int(binary.BigEndian.Uint32(b[1:])), b[5:], nil
	}
	return 0, nil, errMsgpack
}

// msgpackElements splits the first n encoded elements off b.
func msgpackElements(b []byte, n int) ([][]byte, error) {
	if n > len(b) {
		return nil, errMsgpack // every element takes a byte at least
	}
	out := make([][]byte, n)
	for i := range out {
		size, err := msgpackSize(b)
		if err != nil {
			return nil, err
		}
		out[i], b = b[:size], b[size:]
	}
	return out, nil
}

// msgpackInt decodes an integer element.
func msgpackInt(b []byte) (int64, bool) {
	switch c := b[0]; {
	case c < 0x80:
		return int64(c), true
	case c >= 0xe0:
		return int64(int8(c)), true
	case c == 0xcc:
		return int64(b[1]), true
	case c == 0xcd:
		return int64(binary.BigEndian.Uint16(b[1:])), true
	case c == 0xce:
		return int64(binary.BigEndian.Uint32(b[1:])), true
	case c == 0xcf, c == 0xd3:
		return int64(binary.BigEndian.Uint64(b[1:])), true
	case c == 0xd0:
		return int64(int8(b[1])), true
	case c == 0xd1:
		return int64(int16(binary.BigEndian.Uint16(b[1:]))), true
	case c == 0xd2:
		return int64(int32(binary.BigEndian.Uint32(b[1:]))), true
	}
	return 0, false
}

// msgpackSize is the encoded length of the element at the start of b.
func msgpackSize(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, errMsgpack
	}
	c := b[0]
	var head, body, count int // header bytes, payload bytes, nested elements
	switch {
	case c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		head = 1
	case c&0xf0 == 0x80:
		head, count = 1, 2*int(c&0x0f)
	case c&0xf0 == 0x90:
		head, count = 1, int(c&0x0f)
	case c&0xe0 == 0xa0:
		head, body = 1, int(c&0x1f)
	case c == 0xcc || c == 0xd0:
		head = 2
	case c == 0xcd || c == 0xd1:
		head = 3
	case c == 0xce || c == 0xd2 || c == 0xca:
		head = 5
	case c == 0xcf || c == 0xd3 || c == 0xcb:
		head = 9
	case c == 0xd4, c == 0xd5, c == 0xd6, c == 0xd7, c == 0xd8:
		head = 2 + 1<<(c-0xd4) // fixext: type byte and 1, 2, 4, 8 or 16 bytes
	case c == 0xc4 || c == 0xd9 || c == 0xc7:
		if len(b) < 2 {
			return 0, errMsgpack
		}
		head, body = 2, int(b[1])
		if c == 0xc7 {
			head++ // the ext's type byte
		}
	case c == 0xc5 || c == 0xda || c == 0xc8:
		if len(b) < 3 {
			return 0, errMsgpack
		}
		head, body = 3, int(binary.BigEndian.Uint16(b[1:]))
		if c == 0xc8 {
			head++
		}
	case c == 0xc6 || c == 0xdb || c == 0xc9:
		if len(b) < 5 {
			return 0, errMsgpack
		}
		head, body = 5, int(binary.BigEndian.Uint32(b[1:]))
		if c == 0xc9 {
			head++
		}
	case c == 0xdc || c == 0xde:
		if len(b) < 3 {
			return 0, errMsgpack
		}
		head, count = 3, int(binary.BigEndian.Uint16(b[1:]))
		if c == 0xde {
			count *= 2
		}
	case c == 0xdd || c == 0xdf:
		if len(b) < 5 {
			return 0, errMsgpack
		}
		head, count = 5, int(binary.BigEndian.Uint32(b[1:]))
		if c == 0xdf {
			count *= 2
		}
	default:
		return 0, errMsgpack
	}
	size := head + body
	if size > len(b) {
		return 0, errMsgpack
	}
	for range count {
		n, err := msgpackSize(b[size:])
		if err != nil {
			return 0, err
		}
		size += n
	}
	return size, nil
}
