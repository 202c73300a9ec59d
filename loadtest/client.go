package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// frame is every field the tool reads from the server's messages; the rest is skipped.
type frame struct {
	Cmd       string            `json:"cmd"`
	Rid       string            `json:"rid"`
	Error     string            `json:"error"`
	OK        bool              `json:"ok"`
	CID       string            `json:"CID"`
	ID        int64             `json:"id"`
	MTime     string            `json:"m_time"`
	ClientID  string            `json:"client_id"`
	Content   string            `json:"content"`
	FUsername string            `json:"f_username"`
	Session   string            `json:"session"`
	Messages  []json.RawMessage `json:"Messages"`
	More      bool              `json:"More"`
	Convos    []frame           `json:"Convos"` // SyncConvos
}

// callTimeout bounds a request's wait for its reply: a server that stops answering must not hang
// the run.
const callTimeout = 30 * time.Second

// wsClient is one session over the raw websocket endpoint: one JSON object per text frame.
// Replies are matched to requests by rid; pushes go to onPush, called on the read goroutine.
type wsClient struct {
	conn   *websocket.Conn
	wmu    sync.Mutex
	onPush func(f *frame, at time.Time)

	mu      sync.Mutex
	nextRid int64
	pending map[string]func(*frame, error)
	err     error
	done    chan struct{}
}

// dialer keeps the tool's own buffers small: at 10,000 sessions they add up, and the tool shares
// the machine with the server it measures.
var dialer = &websocket.Dialer{
	HandshakeTimeout: 30 * time.Second,
	ReadBufferSize:   2048,
	WriteBufferSize:  2048,
	NetDialContext:   (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
}

// dial opens a session; onPush (may be nil) sees every frame without a rid.
func dial(ctx context.Context, url string, onPush func(*frame, time.Time)) (*wsClient, error) {
	conn, _, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", url, err)
	}
	c := &wsClient{conn: conn, onPush: onPush, pending: map[string]func(*frame, error){}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		_, p, err := c.conn.ReadMessage()
		at := time.Now()
		if err != nil {
			c.fail(fmt.Errorf("reading: %w", err))
			return
		}
		f := new(frame)
		if err := json.Unmarshal(p, f); err != nil {
			c.fail(fmt.Errorf("decoding %.100q: %w", p, err))
			return
		}
		if f.Rid == "" {
			if c.onPush != nil {
				c.onPush(f, at)
			}
			continue
		}
		c.mu.Lock()
		cb := c.pending[f.Rid]
		delete(c.pending, f.Rid)
		c.mu.Unlock()
		if cb != nil {
			cb(f, nil)
		}
	}
}

// fail ends every pending request with err; later requests fail at once.
func (c *wsClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	pending := c.pending
	c.pending = map[string]func(*frame, error){}
	c.mu.Unlock()
	for _, cb := range pending {
		cb(nil, err)
	}
}

// send sends req (a struct or map marshalled to a JSON object) with a fresh rid; cb runs once
// with the reply or an error, on the read goroutine or the caller's.
func (c *wsClient) send(req map[string]any, cb func(*frame, error)) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		cb(nil, err)
		return
	}
	c.nextRid++
	rid := strconv.FormatInt(c.nextRid, 36)
	c.pending[rid] = cb
	c.mu.Unlock()
	req["rid"] = rid
	b, err := json.Marshal(req)
	if err == nil {
		c.wmu.Lock()
		err = c.conn.WriteMessage(websocket.TextMessage, b)
		c.wmu.Unlock()
	}
	if err != nil {
		c.mu.Lock()
		_, still := c.pending[rid]
		delete(c.pending, rid)
		c.mu.Unlock()
		if still {
			cb(nil, fmt.Errorf("writing %s: %w", req["cmd"], err))
		}
	}
}

// call sends req and waits for its reply; a reply with an error field is returned as an error.
func (c *wsClient) call(ctx context.Context, req map[string]any) (*frame, error) {
	type result struct {
		f   *frame
		err error
	}
	ch := make(chan result, 1)
	c.send(req, func(f *frame, err error) { ch <- result{f, err} })
	t := time.NewTimer(callTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err == nil && r.f.Error != "" {
			r.err = fmt.Errorf("%s: %w", req["cmd"], &serverError{r.f.Error})
		}
		return r.f, r.err
	case <-t.C:
		return nil, fmt.Errorf("%s: no reply in %s", req["cmd"], callTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serverError is an error reply from the server.
type serverError struct{ msg string }

func (e *serverError) Error() string { return "server: " + e.msg }

func isServerError(err error) bool {
	var se *serverError
	return errors.As(err, &se)
}

// failed is the error that ended the connection, or nil while it is open.
func (c *wsClient) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close closes the connection and waits for the read goroutine to end.
func (c *wsClient) close() {
	_ = c.conn.Close()
	<-c.done
}
