package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/igm/sockjs-go/v3/sockjs"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/pquerna/ffjson/ffjson"
	"golang.org/x/time/rate"
)

// Limits of DESIGN §7.
const (
	frameLimit     = 64 << 10 // larger frames answer an error
	hardFrameLimit = 1 << 20  // larger request bodies are cut off
	ridLimit       = 64
	floodLimit     = 200 // consecutive rate-limited frames before the session is closed
	pushBuffer     = 128 // events a session may have pending before it counts as slow
	commandTimeout = 30 * time.Second
)

// SockJS close codes we use.
const (
	closeShutdown = 1001
	closeFlood    = 4008
	closeSlow     = 4009
	closeRevoked  = 4010
	// closeLoginTimeout: the connection did not log in within -login-timeout.
	closeLoginTimeout = 4011
)

// Session is one SockJS session: before login it answers the handshake commands, after login
// its Run loop answers everything in functs and forwards the user's events.
type Session struct {
	db      *Database
	sock    sockjs.Session
	id      string
	remote  string
	limiter *rate.Limiter
	strikes int

	// Set at login.
	user      string // the username as registered
	upper     string
	tokenHash string        // the resume token this session logged in with or was issued
	events    sessionEvents // its user's events, from the user's hub (session_events.go)
	joined    bool          // in its user's hub
	slow      atomic.Bool   // being closed for not keeping up

	// closeAfterReply, when set by a command, closes the session with this reason once the
	// command's reply is sent.
	closeAfterReply string

	closeOnce sync.Once
	corker    *guardConn // its websocket connection, for coalescing writes (writecork.go); nil on HTTP transports

	sends sendPipeline // SendMessages being stored (send_pipeline.go)
}

// sockHandler runs one SockJS session from its first frame to its end.
func (db *Database) sockHandler(srvCtx context.Context, sock sockjs.Session) {
	db.sessions.Add(1)
	defer db.sessions.Done()
	db.metrics.sessionOpened()
	defer db.metrics.sessionClosed()
	ctx, cancel := context.WithCancel(srvCtx)
	defer cancel()
	s := &Session{
		db:      db,
		sock:    sock,
		id:      randomToken(),
		remote:  db.clientKey(sock),
		limiter: rate.NewLimiter(rate.Limit(db.cfg.CommandRate), db.cfg.CommandBurst),
		corker:  corkerOf(sock),
	}
	defer func() {
		// A panic outside a command (commands recover their own) ends this session, not the
		// process.
		if r := recover(); r != nil {
			logPanic("session of "+s.user, r)
			s.close(1011, "internal error")
		}
		if srvCtx.Err() != nil {
			s.close(closeShutdown, "server shutting down")
		}
		s.close(1000, "bye")
		s.unsubscribe()
	}()
	if !s.handshake(ctx) {
		return
	}
	s.Run(ctx)
}

// clientKey is the session's key in per-address limits.
func (db *Database) clientKey(sock sockjs.Session) string {
	r := sock.Request()
	if r == nil {
		return limitKey(netip.Addr{})
	}
	return limitKey(db.limits.proxies.clientAddr(r))
}

// handshake answers frames until the client has registered or logged in; false means the
// session ended first. A connection that does not log in within -login-timeout is closed, so
// idle connections cannot pile up.
func (s *Session) handshake(ctx context.Context) bool {
	hctx, cancel := s.loginDeadline(ctx)
	defer cancel()
	for s.user == "" {
		frame, err := s.sock.RecvCtx(hctx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			s.close(closeLoginTimeout, "log in sooner")
			return false
		}
		if err != nil {
			return false
		}
		s.handleFrame(ctx, frame)
	}
	return true
}

// close ends the session once, with a SockJS close code.
func (s *Session) close(code uint32, reason string) {
	s.closeOnce.Do(func() {
		_ = s.sock.Close(code, reason)
	})
}

// handshakeFuncts are the commands a session may send before login.
var handshakeFuncts = map[string]commandFunc{
	"CreateUser":           createUser,
	"ValidateUser":         validateUser,
	"GetPasswordResetUser": getPasswordResetUser,
	"ResetUserPassword":    resetUserPassword,
	"CheckUsername":        checkUsername,
}

// handleFrame answers one frame with exactly one direct reply.
func (s *Session) handleFrame(ctx context.Context, frame string) {
	if !s.limiter.Allow() {
		s.strikes++
		if s.strikes > floodLimit {
			slog.Warn("closing flooding session", "user", s.user, "remote", s.remote)
			s.close(closeFlood, "flooding")
			return
		}
		cmd, rid := peekCmd(frame)
		s.db.metrics.command(cmd, outcomeRateLimited)
		s.sendError(cmd, rid, "rate limited")
		return
	}
	s.strikes = 0
	if len(frame) > frameLimit {
		s.db.metrics.command("", outcomeError)
		s.sendError("", "", fmt.Sprintf("frame too large: the limit is %d bytes", frameLimit))
		return
	}
	req, err := parseRequest(frame)
	if err != nil {
		cmd, rid := peekCmd(frame)
		s.db.metrics.command(cmd, outcomeError)
		s.sendError(cmd, rid, err.Error())
		return
	}
	fn, errText := s.lookup(req.Cmd)
	if fn == nil {
		s.db.metrics.command(req.Cmd, outcomeError)
		s.send(&ErrorReply{RetCmd: retCmdFor(errText), Cmd: req.Cmd, Rid: req.Rid, Error: errText})
		return
	}
	if s.user == "" {
		// Logins and registrations cost bcrypt time: a few at once per address.
		if !s.db.limits.handshakes.acquire(s.remote) {
			s.db.metrics.command(req.Cmd, outcomeRateLimited)
			s.sendError(req.Cmd, req.Rid, "Too many logins in progress from your address; try again.")
			return
		}
		defer s.db.limits.handshakes.release(s.remote)
		// …and a bounded number on the whole instance: after a restart every client logs in
		// again at once, and admitting them all would time every one of them out.
		if !s.db.limits.logins.enter(ctx) {
			s.db.metrics.command(req.Cmd, outcomeRateLimited)
			s.sendError(req.Cmd, req.Rid, errServerBusy)
			return
		}
		defer s.db.limits.logins.leave()
	}
	if req.Cmd == "SendMessage" {
		s.pipelineSend(ctx, req) // send_pipeline.go
		return
	}
	s.waitSends()
	s.execute(ctx, fn, req)
}

func retCmdFor(errText string) string {
	if errText == "unknown command" {
		return "bad_command"
	}
	return ""
}

// lookup finds the handler for a command in the session's phase, or the error to answer.
func (s *Session) lookup(cmd string) (commandFunc, string) {
	if s.user == "" {
		if fn := handshakeFuncts[cmd]; fn != nil {
			return fn, ""
		}
		return nil, "not logged in"
	}
	if fn := functs[cmd]; fn != nil {
		return fn, ""
	}
	if handshakeFuncts[cmd] != nil {
		return nil, "already logged in"
	}
	return nil, "unknown command"
}

// execute runs a handler, recovering a panic into an error reply so the session goes on.
func (s *Session) execute(ctx context.Context, fn commandFunc, req *Request) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	defer s.recoverCommand(req)
	rep, err := fn(ctx, s, req)
	s.answer(req, rep, err)
}

// recoverCommand, deferred, turns a command's panic into an error reply so the session goes on.
func (s *Session) recoverCommand(req *Request) {
	if r := recover(); r != nil {
		logPanic("command "+req.Cmd, r)
		s.db.metrics.command(req.Cmd, outcomePanic)
		s.sendError(req.Cmd, req.Rid, "internal error")
	}
}

// answer sends a command's direct reply: rep, or err's text.
func (s *Session) answer(req *Request, rep reply, err error) {
	if err != nil {
		s.db.metrics.command(req.Cmd, outcomeError)
		s.sendError(req.Cmd, req.Rid, s.errorText(req.Cmd, err))
		return
	}
	s.db.metrics.command(req.Cmd, outcomeOK)
	if rep == nil {
		rep = &AckReply{OK: true}
	}
	rep.setReply(req.Cmd, req.Rid)
	s.send(rep)
	if s.closeAfterReply != "" {
		s.close(1000, s.closeAfterReply)
	}
}

// errorText is what the client is told about err: a ClientError's own words, otherwise a
// generic reason (the details go to the log, not to the client).
func (s *Session) errorText(cmd string, err error) string {
	var ce *ClientError
	if errors.As(err, &ce) {
		return ce.Msg
	}
	if errors.Is(err, ErrUnavailable) || postgresUnavailable(err) {
		slog.Error("storage unavailable", "cmd", cmd, "user", s.user, "err", err)
		return "storage unavailable, try again shortly"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		slog.Error("command timed out", "cmd", cmd, "user", s.user, "err", err)
		return "timed out, try again"
	}
	slog.Error("command failed", "cmd", cmd, "user", s.user, "err", err)
	return "internal error, try again"
}

// postgresUnavailable reports whether err means PostgreSQL could not be reached (as opposed to
// a statement that failed), so that both stores' outages read the same to a client.
func postgresUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // a command's own deadline, which errorText words itself
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isAdminShutdown(err)
}

// isAdminShutdown: the server is shutting down or restarting (57P01, 57P02, 57P03).
func isAdminShutdown(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "57P0")
}

// ClientError is an error whose message the client may see.
type ClientError struct{ Msg string }

func (e *ClientError) Error() string { return e.Msg }

// clientErr makes a ClientError.
func clientErr(format string, args ...any) error {
	return &ClientError{Msg: fmt.Sprintf(format, args...)}
}

// parseRequest decodes one frame; anything but a JSON object with a cmd is an error.
func parseRequest(frame string) (*Request, error) {
	req := &Request{frame: frame}
	if err := ffjson.UnmarshalFast([]byte(frame), req); err != nil {
		if !isJSONObject(frame) {
			return nil, errors.New("malformed frame: expected a JSON object")
		}
		return nil, fmt.Errorf("invalid request: %v", err)
	}
	if req.Cmd == "" {
		return nil, errors.New("missing cmd")
	}
	if len(req.Rid) > ridLimit {
		req.Rid = ""
		return nil, fmt.Errorf("rid longer than %d characters", ridLimit)
	}
	return req, nil
}

func isJSONObject(frame string) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal([]byte(frame), &m) == nil
}

// peekCmd reads cmd and rid from a frame that did not decode as a request, for the reply.
func peekCmd(frame string) (cmd, rid string) {
	var p struct {
		Cmd any `json:"cmd"`
		Rid any `json:"rid"`
	}
	if len(frame) > frameLimit || json.Unmarshal([]byte(frame), &p) != nil {
		return "", ""
	}
	cmd, _ = p.Cmd.(string)
	rid, _ = p.Rid.(string)
	if len(cmd) > 64 {
		cmd = ""
	}
	if len(rid) > ridLimit {
		rid = ""
	}
	return cmd, rid
}

// reply is a direct reply; execute stamps it with the request's cmd and rid.
type reply interface{ setReply(cmd, rid string) }

func (r *ErrorReply) setReply(cmd, rid string)   { r.Cmd, r.Rid = cmd, rid }
func (r *AckReply) setReply(cmd, rid string)     { r.Cmd, r.Rid = cmd, rid }
func (r *UserView) setReply(cmd, rid string)     { r.Cmd, r.Rid = cmd, rid }
func (r *PublicUser) setReply(cmd, rid string)   { r.Cmd, r.Rid = cmd, rid }
func (r *ConvoData) setReply(cmd, rid string)    { r.Cmd, r.Rid = cmd, rid }
func (r *ConvoPush) setReply(cmd, rid string)    { r.Cmd, r.Rid = cmd, rid }
func (r *MatchedUsers) setReply(cmd, rid string) { r.Cmd, r.Rid = cmd, rid }
func (r *NameCheck) setReply(cmd, rid string)    { r.Cmd, r.Rid = cmd, rid }
func (r *EmailsReply) setReply(cmd, rid string)  { r.Cmd, r.Rid = cmd, rid }
func (r *EmailReply) setReply(cmd, rid string)   { r.Cmd, r.Rid = cmd, rid }
func (r *UploadTarget) setReply(cmd, rid string) { r.Cmd, r.Rid = cmd, rid }
func (r *FileToken) setReply(cmd, rid string)    { r.Cmd, r.Rid = cmd, rid }
func (r *QuotaReply) setReply(cmd, rid string)   { r.Cmd, r.Rid = cmd, rid }

func (s *Session) sendError(cmd, rid, msg string) {
	s.send(&ErrorReply{Cmd: cmd, Rid: rid, Error: msg})
}

// send marshals v with its ffjson marshaler and sends it to the client.
func (s *Session) send(v any) {
	buf, err := ffjson.Marshal(v)
	if err != nil {
		slog.Error("marshalling reply", "err", err)
		return
	}
	s.sendRaw(buf)
	ffjson.Pool(buf)
}

func (s *Session) sendRaw(b []byte) {
	if err := s.sock.Send(string(b)); err != nil && !errors.Is(err, sockjs.ErrSessionNotOpen) {
		slog.Debug("sending to client", "user", s.user, "err", err)
	}
}

// login makes the session act as u from now on and joins it to u's events. The server must
// have the subscription before the client hears it is logged in, so that no event published
// after the reply is missed; while NATS is away the login goes ahead at once (the subscription
// is sent on reconnect, and every session then resyncs).
func (s *Session) login(u *UserRecord, hash string) error {
	s.user, s.upper, s.tokenHash = u.Username, upperName(u.Username), hash
	if err := s.db.join(s); err != nil {
		s.user, s.upper = "", ""
		return err
	}
	s.joined = true
	if s.db.nc.Status() != nats.CONNECTED {
		s.requestResync() // in case NATS came back before this session joined
	}
	return nil
}

func (s *Session) unsubscribe() {
	if s.joined {
		s.db.leave(s)
	}
}

// markSlow reports whether the session was not already being closed as slow, and marks it.
func (s *Session) markSlow() bool { return s.slow.CompareAndSwap(false, true) }
