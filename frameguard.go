package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// sockjs-go reads whole websocket messages into memory without a size limit, so a client could
// exhaust memory with one huge frame. frameGuard sits under the websocket library, reads the
// client's frame headers as they pass, and fails the connection once a message (all its
// fragments) exceeds the limit — before the payload is read.

var errFrameTooLarge = errors.New("websocket message over the hard frame limit")

// guardWebsockets wraps the response writer of upgrade requests so the hijacked connection is
// guarded. On the raw websocket path (rawPath) it also finds half-dead clients: the server pings
// every heartbeat and every websocket client answers with a pong, so a connection that sends
// nothing for rawIdle is dead, and its read fails.
func guardWebsockets(h http.Handler, limit int64, rawPath string, rawIdle time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hj, ok := w.(http.Hijacker); ok && r.Header.Get("Upgrade") != "" {
			g := &guardedWriter{ResponseWriter: w, hj: hj, limit: limit, req: r}
			defer hijacked.Delete(r.Context()) // writecork.go: if no session took it
			if r.URL.Path == rawPath {
				g.idle = rawIdle
			}
			w = g
		}
		h.ServeHTTP(w, r)
	})
}

type guardedWriter struct {
	http.ResponseWriter
	hj    http.Hijacker
	limit int64
	idle  time.Duration
	req   *http.Request
}

func (g *guardedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := g.hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	gc := &guardConn{Conn: c, limit: g.limit, idle: g.idle}
	if brw.Reader.Buffered() > 0 {
		return nil, nil, errors.New("client sent data before the handshake completed")
	}
	brw.Reader.Reset(gc) // reuse its buffer: a connection's memory counts at 10,000 sessions
	hijacked.Store(g.req.Context(), gc)
	return gc, brw, nil
}

// guardConn tracks the client→server websocket frame stream (RFC 6455 §5.2).
type guardConn struct {
	net.Conn
	limit   int64
	idle    time.Duration // > 0: a read that waits longer fails
	hdr     []byte        // the header bytes of the frame being read
	need    int           // header bytes still missing; 0 while in a payload
	payload int64         // payload bytes left in the current frame
	message int64         // bytes of the current message so far

	wmu  sync.Mutex
	wbuf *[]byte // while corked (writecork.go): the writes kept
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.idle > 0 {
		_ = g.Conn.SetReadDeadline(time.Now().Add(g.idle))
	}
	n, err := g.Conn.Read(p)
	if ferr := g.scan(p[:n]); ferr != nil {
		_ = g.Conn.Close()
		return 0, ferr
	}
	return n, err
}

// scan advances the frame parser over b.
func (g *guardConn) scan(b []byte) error {
	for len(b) > 0 {
		if g.payload > 0 {
			k := min(int64(len(b)), g.payload)
			g.payload -= k
			b = b[k:]
			continue
		}
		if g.hdr == nil {
			g.hdr, g.need = make([]byte, 0, 14), 2
		}
		k := min(len(b), g.need)
		g.hdr = append(g.hdr, b[:k]...)
		g.need -= k
		b = b[k:]
		if g.need > 0 {
			continue
		}
		if err := g.headerRead(); err != nil {
			return err
		}
	}
	return nil
}

// headerRead is called when g.need header bytes have arrived: either it learns that more header
// follows, or it has the whole header and starts the payload.
func (g *guardConn) headerRead() error {
	h := g.hdr
	full := 2
	switch h[1] & 0x7f {
	case 126:
		full += 2
	case 127:
		full += 8
	}
	if h[1]&0x80 != 0 {
		full += 4 // masking key
	}
	if len(h) < full {
		g.need = full - len(h)
		return nil
	}
	var size int64
	switch l := h[1] & 0x7f; l {
	case 126:
		size = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		size = int64(binary.BigEndian.Uint64(h[2:10]) & (1<<63 - 1))
	default:
		size = int64(l)
	}
	opcode := h[0] & 0x0f
	if opcode < 8 { // data frames count towards the message; control frames are tiny
		if opcode != 0 {
			g.message = 0
		}
		g.message += size
		if g.message > g.limit {
			return errFrameTooLarge
		}
	}
	g.payload, g.hdr = size, nil
	return nil
}
