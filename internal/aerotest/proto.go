package aerotest

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Every message on the wire starts with an 8-byte proto header: version (2), type, and a 48-bit
// big-endian length of what follows.
const (
	protoVersion    = 2
	protoInfo       = 1 // info request/response: text lines
	protoMessage    = 3 // AS_MSG: one record command
	protoCompressed = 4 // AS_MSG wrapped in zlib, preceded by its uncompressed size
)

// readProto reads one proto message and returns its type and body.
func readProto(r *bufio.Reader) (byte, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[0] != protoVersion {
		return 0, nil, fmt.Errorf("bad proto version %d", hdr[0])
	}
	size := binary.BigEndian.Uint64(hdr[:]) & 0xFFFFFFFFFFFF
	if size > maxMessageSize {
		return 0, nil, fmt.Errorf("message of %d bytes is larger than the %d allowed", size, maxMessageSize)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("reading %d-byte message body: %w", size, err)
	}
	return hdr[1], body, nil
}

// protoHeader builds the 8-byte header for a body of n bytes.
func protoHeader(typ byte, n int) []byte {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	hdr[0], hdr[1] = protoVersion, typ
	return hdr[:]
}

// decompress unwraps a compressed AS_MSG: 8 bytes of uncompressed size, then a zlib stream
// holding a whole proto message (its own header included).
func decompress(body []byte) ([]byte, error) {
	if len(body) < 8 {
		return nil, errors.New("compressed message shorter than its size prefix")
	}
	size := binary.BigEndian.Uint64(body)
	if size > maxMessageSize || size < 8 {
		return nil, fmt.Errorf("compressed message claims %d bytes", size)
	}
	zr, err := zlib.NewReader(bytes.NewReader(body[8:]))
	if err != nil {
		return nil, fmt.Errorf("opening compressed message: %w", err)
	}
	inner := make([]byte, size)
	if _, err := io.ReadFull(zr, inner); err != nil {
		return nil, fmt.Errorf("inflating compressed message: %w", err)
	}
	if inner[0] != protoVersion || inner[1] != protoMessage {
		return nil, fmt.Errorf("compressed message wraps proto %d/%d", inner[0], inner[1])
	}
	return inner[8:], nil
}

// AS_MSG header flags (the bits this server looks at).
const (
	info1Read          = 1 << 0
	info1GetAll        = 1 << 1
	info1NoBinData     = 1 << 5
	info2Write         = 1 << 0
	info2Delete        = 1 << 1
	info2Generation    = 1 << 2
	info2GenGT         = 1 << 3
	info2DurableDelete = 1 << 4
	info2CreateOnly    = 1 << 5
	info2RespondAll    = 1 << 7
	info3Last          = 1 << 0
	info3UpdateOnly    = 1 << 3
	info3CreateRepl    = 1 << 4
	info3ReplOnly      = 1 << 5
)

// Field types.
const (
	fieldNamespace = 0
	fieldSet       = 1
	fieldKey       = 2
	fieldDigest    = 4
)

// Operation types.
const (
	opRead      = 1
	opWrite     = 2
	opTouch     = 11
	opDeleteAll = 14
)

// Particle type NULL: a write of it removes the bin.
const particleNull = 0

const asMsgHeaderSize = 22

// message is a parsed AS_MSG request.
type message struct {
	info1, info2, info3 byte
	generation          uint32
	recordTTL           uint32
	fields              map[byte][]byte
	ops                 []op
}

type op struct {
	code  byte
	ptype byte
	name  string
	value []byte
}

// parseMessage decodes an AS_MSG body: a 22-byte header, then fields, then operations. The
// slices in the result point into body, which the caller does not reuse.
func parseMessage(body []byte) (*message, error) {
	if len(body) < asMsgHeaderSize || int(body[0]) < asMsgHeaderSize || int(body[0]) > len(body) {
		return nil, fmt.Errorf("AS_MSG of %d bytes is too short for its header", len(body))
	}
	m := &message{
		info1:      body[1],
		info2:      body[2],
		info3:      body[3],
		generation: binary.BigEndian.Uint32(body[6:]),
		recordTTL:  binary.BigEndian.Uint32(body[10:]),
		fields:     map[byte][]byte{},
	}
	nFields := int(binary.BigEndian.Uint16(body[18:]))
	nOps := int(binary.BigEndian.Uint16(body[20:]))
	rest := body[body[0]:]
	for i := 0; i < nFields; i++ {
		if len(rest) < 5 {
			return nil, errors.New("truncated field header")
		}
		size := int(binary.BigEndian.Uint32(rest))
		if size < 1 || size > len(rest)-4 {
			return nil, fmt.Errorf("field size %d overruns the message", size)
		}
		m.fields[rest[4]] = rest[5 : 4+size]
		rest = rest[4+size:]
	}
	for i := 0; i < nOps; i++ {
		o, n, err := parseOp(rest)
		if err != nil {
			return nil, err
		}
		m.ops = append(m.ops, o)
		rest = rest[n:]
	}
	return m, nil
}

// parseOp decodes one operation: size (of what follows it), op code, particle type, a
// version byte, name length, name, value.
func parseOp(b []byte) (op, int, error) {
	if len(b) < 8 {
		return op{}, 0, errors.New("truncated operation header")
	}
	size := int(binary.BigEndian.Uint32(b))
	nameLen := int(b[7])
	if size < 4+nameLen || size > len(b)-4 {
		return op{}, 0, fmt.Errorf("operation size %d overruns the message", size)
	}
	o := op{code: b[4], ptype: b[5], name: string(b[8 : 8+nameLen]), value: b[8+nameLen : 4+size]}
	return o, 4 + size, nil
}

// reply is what a command answers.
type reply struct {
	result     byte
	generation uint32
	voidTime   uint32
	last       bool // set info3 LAST, which ends a (refused) multi-record stream
	bins       []bin
}

// encode builds the whole response: proto header, AS_MSG header and one op per returned bin.
func (r reply) encode() []byte {
	size := asMsgHeaderSize
	for _, b := range r.bins {
		size += 8 + len(b.name) + len(b.data)
	}
	out := make([]byte, 0, 8+size)
	out = append(out, protoHeader(protoMessage, size)...)
	var h [asMsgHeaderSize]byte
	h[0] = asMsgHeaderSize
	if r.last {
		h[3] = info3Last
	}
	h[5] = r.result
	binary.BigEndian.PutUint32(h[6:], r.generation)
	binary.BigEndian.PutUint32(h[10:], r.voidTime)
	binary.BigEndian.PutUint16(h[20:], uint16(len(r.bins)))
	out = append(out, h[:]...)
	for _, b := range r.bins {
		out = binary.BigEndian.AppendUint32(out, uint32(4+len(b.name)+len(b.data)))
		out = append(out, opRead, b.ptype, 0, byte(len(b.name)))
		out = append(out, b.name...)
		out = append(out, b.data...)
	}
	return out
}
