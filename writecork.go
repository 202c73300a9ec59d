package main

import (
	"sync"

	"github.com/igm/sockjs-go/v3/sockjs"
)

// Write coalescing ("corking"). sockjs-go writes every message to the client as it is sent: one
// websocket frame, one write system call, and on loopback or a busy host the system call is most
// of a delivery's cost. A session that forwards several queued events at once corks its
// websocket connection first: the frames gorilla/websocket writes meanwhile are kept, and go out
// in one write when it uncorks. Nothing waits for a timer: a lone event is written at once, and
// a corked batch as soon as it is formed. Frames are never merged or reordered, only written
// together, so the client sees exactly the frames it would have.

// corkLimit is how much a corked connection keeps before writing anyway.
const corkLimit = 64 << 10

// corkBufs are the buffers of corked connections, returned on uncork, so that sessions between
// batches (nearly all of them) hold none.
var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// hijacked holds each websocket request's connection from its hijack until its session takes it
// (corkerOf), so that a session holds nothing more than the pointer. The key is the request's
// context: the request reaches sockjs-go as a copy (http.StripPrefix), the context is the same.
var hijacked sync.Map // context.Context → *guardConn

// corkerOf is the websocket connection under a SockJS session, or nil (an HTTP transport, whose
// writes are not ours to coalesce).
func corkerOf(sock sockjs.Session) *guardConn {
	r := sock.Request()
	if r == nil {
		return nil
	}
	c, _ := hijacked.LoadAndDelete(r.Context())
	gc, _ := c.(*guardConn)
	return gc
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.wbuf == nil {
		return g.Conn.Write(p)
	}
	*g.wbuf = append(*g.wbuf, p...)
	if len(*g.wbuf) >= corkLimit {
		if err := g.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// cork keeps the connection's writes until uncork (nil-safe).
func (g *guardConn) cork() {
	if g == nil {
		return
	}
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.wbuf == nil {
		g.wbuf = corkBufs.Get().(*[]byte)
	}
}

// uncork writes what was kept in one write (nil-safe). A failed write closes the connection, so
// that the session ends as it would have on the frame's own write.
func (g *guardConn) uncork() {
	if g == nil {
		return
	}
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.wbuf == nil {
		return
	}
	err := g.flushLocked()
	b := g.wbuf
	g.wbuf = nil
	if cap(*b) <= corkLimit*2 { // flushLocked left it empty
		corkBufs.Put(b)
	}
	if err != nil {
		_ = g.Conn.Close()
	}
}

func (g *guardConn) flushLocked() error {
	if len(*g.wbuf) == 0 {
		return nil
	}
	_, err := g.Conn.Write(*g.wbuf)
	*g.wbuf = (*g.wbuf)[:0]
	return err
}

// Close writes what a cork kept (a close frame, say) before closing, unless a write is under way
// (to a client that stopped reading, perhaps): closing must not wait for it.
func (g *guardConn) Close() error {
	if g.wmu.TryLock() {
		if g.wbuf != nil {
			_ = g.flushLocked()
		}
		g.wmu.Unlock()
	}
	return g.Conn.Close()
}
