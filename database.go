package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Database holds the connections every session shares, opened once by Connect.
type Database struct {
	cfg     Config
	pool    *pgxpool.Pool
	quick   QuickStore
	nc      *nats.Conn
	natsd   *natsserver.Server // the embedded NATS server, when -nats is empty
	limits  *limits
	metrics *Metrics

	// sessions counts running sockHandlers, so that shutdown can wait for them.
	sessions sync.WaitGroup
	// hubs share one NATS subscription per user among the user's sessions (userhub.go).
	hubs *hubs
	// missed are publishes NATS refused, repaired when it is back (resync.go).
	missed missedPublishes
	// convTables are the conversations whose tables are known to be current (convtable.go).
	convTables sync.Map // CID → true
	// writers group the sends to each conversation (groupcommit.go).
	writers sync.Map // CID → *convWriter
	// convos caches conversation records (convcache.go).
	convos convoCache
	// keys caches the quick store's shared secrets (mail_attachments.go).
	keys sync.Map // name → []byte
	// sms caches who can get SMS (sms.go).
	sms smsCache
	// outboxWake wakes this instance's outbound mail worker (mail_queue.go).
	outboxWake chan struct{}
	// push sends notifications to offline recipients (push.go); nil when no provider is set.
	push *pusher
	// bots answer @giphy and @forecast (bots.go).
	bots *botRunner
	// files stores and serves uploads (files.go).
	files *Files
	// inbound admits inbound mail (mail_guard.go).
	inbound *inboundGuard
	// dkim signs outbound mail (dkim.go); nil without -dkim-key.
	dkim *dkimSigner
}

// Connect opens PostgreSQL (creating the database if it is missing), the quick store and NATS.
func Connect(ctx context.Context, cfg Config) (*Database, error) {
	db := &Database{cfg: cfg, limits: newLimits(cfg), metrics: newMetrics(), hubs: newHubs(),
		outboxWake: make(chan struct{}, 1)}
	db.inbound = newInboundGuard(cfg)
	dk, err := loadDKIM(cfg)
	if err != nil {
		return nil, err
	}
	db.dkim = dk
	pool, err := openPostgres(ctx, cfg.Postgres, db.metrics.pgTracer())
	if err != nil {
		return nil, err
	}
	db.pool = pool
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if db.quick, err = openQuickStore(ctx, cfg.QuickStore, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening quick store %q: %w", cfg.QuickStore, err)
	}
	if db.files, err = newFiles(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.connectNATS(cfg.NATS); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the shared connections.
func (db *Database) Close() {
	if db.nc != nil {
		_ = db.nc.Drain()
		db.nc.Close()
	}
	if db.natsd != nil {
		db.natsd.Shutdown()
	}
	if db.quick != nil {
		db.quick.Close()
	}
	if db.pool != nil {
		db.pool.Close()
	}
}

func openPostgres(ctx context.Context, connString string, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parsing -postgres %q: %w", connString, err)
	}
	pcfg.MaxConns = 16
	pcfg.ConnConfig.Tracer = tracer
	pool, err := connectPool(ctx, pcfg)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
		if err = createDatabase(ctx, pcfg.ConnConfig); err == nil {
			pool, err = connectPool(ctx, pcfg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL (%s@%s/%s): %w; is it running and does the role exist? ./add_deps.sh sets both up, or pass -postgres",
			pcfg.ConnConfig.User, pcfg.ConnConfig.Host, pcfg.ConnConfig.Database, err)
	}
	return pool, nil
}

func connectPool(ctx context.Context, pcfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// createDatabase creates the configured database through the maintenance database.
func createDatabase(ctx context.Context, cc *pgx.ConnConfig) error {
	admin := cc.Copy()
	name := admin.Database
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connecting to database postgres to create %q: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created meanwhile by another instance
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating database %q: %w", name, err)
	}
	slog.Info("created database", "name", name)
	return nil
}

// connectNATS connects to the configured NATS, or starts an embedded server in-process.
func (db *Database) connectNATS(natsURL string) error {
	opts := []nats.Option{
		nats.Name("pingedchat"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(db.natsError),
		nats.DisconnectErrHandler(db.natsDisconnected),
		nats.ReconnectHandler(db.natsReconnected),
	}
	if natsURL == "" {
		ns, err := natsserver.NewServer(&natsserver.Options{DontListen: true, NoSigs: true, NoLog: true})
		if err != nil {
			return fmt.Errorf("starting embedded NATS: %w", err)
		}
		ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			ns.Shutdown()
			return errors.New("embedded NATS server did not start")
		}
		db.natsd = ns
		opts = append(opts, nats.InProcessServer(ns))
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return fmt.Errorf("connecting to NATS %s: %w; is it running? leave -nats empty for the embedded server", redactURL(natsURL), err)
	}
	db.nc = nc
	// A Resync for everyone here, when some instance lost more than it could remember.
	if _, err := nc.Subscribe(broadcastSubject, func(*nats.Msg) { db.resyncSessions() }); err != nil {
		return fmt.Errorf("subscribing to %s: %w", broadcastSubject, err)
	}
	if err := db.subscribeConvoChanges(); err != nil {
		return fmt.Errorf("subscribing to %s: %w", convoSubject, err)
	}
	return nil
}

// natsError handles NATS's asynchronous errors. A slow consumer here is the instance's inbox
// overflowing (userhub.go): the event was dropped, so the sessions of its user are told to
// resync. (A single session that cannot keep up is closed by the dispatcher.)
func (db *Database) natsError(_ *nats.Conn, sub *nats.Subscription, err error) {
	db.metrics.natsError()
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
		if sessions := db.sessionsOfSub(sub); sessions != nil {
			slog.Warn("events dropped: the instance's inbox is full; telling the user's sessions to resync", "sessions", len(sessions))
			for _, s := range sessions {
				s.requestResync()
			}
			return
		}
	}
	slog.Error("NATS error", "err", err)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// userSubject is the NATS subject every session of a user subscribes to.
func userSubject(upper string) string { return "pinged.user." + upper }

// Headers on pushes that the sessions act on rather than forward.
const (
	hdrSkipSession = "Pinged-Skip" // not to the session with this id (the one that caused it)
	hdrClose       = "Pinged-Close"
	hdrCloseToken  = "Pinged-Close-Token" // with hdrClose: only the sessions of this resume token
)

// publish sends one marshalled event to every session of each user, marshalled once.
func (db *Database) publish(users []string, payload []byte, skipSession string) {
	for _, u := range users {
		msg := &nats.Msg{Subject: userSubject(upperName(u)), Data: payload}
		if skipSession != "" {
			msg.Header = nats.Header{hdrSkipSession: []string{skipSession}}
		}
		db.publishMsg(msg)
	}
}

// publishClose tells every session of a user to close after forwarding payload.
func (db *Database) publishClose(user string, payload []byte, reason, skipSession string) {
	msg := &nats.Msg{Subject: userSubject(upperName(user)), Data: payload,
		Header: nats.Header{hdrClose: []string{reason}}}
	if skipSession != "" {
		msg.Header.Set(hdrSkipSession, skipSession)
	}
	db.publishMsg(msg)
}

// publishRevoke closes every session of user that logged in with (or was issued) the resume
// token whose hash is given, on every instance.
func (db *Database) publishRevoke(user, tokenHash, reason string) {
	db.publishMsg(&nats.Msg{Subject: userSubject(upperName(user)),
		Header: nats.Header{hdrClose: []string{reason}, hdrCloseToken: []string{tokenHash}}})
}

// Run is the main loop of a logged-in session: it waits on the client's frames and the user's
// NATS events (session_events.go), and answers each frame through the functs map. It returns
// when the session ends.
func (s *Session) Run(ctx context.Context) {
	defer s.waitSends() // send_pipeline.go
	for {
		// Events go first (nextFrame forwards them): a session busy with its own commands must
		// not fall behind on its events until it counts as too slow.
		frame, ok := s.nextFrame(ctx)
		if !ok {
			return
		}
		s.handleFrame(ctx, frame)
	}
}

// forward relays a NATS event to the client, acting on control headers.
func (s *Session) forward(msg *nats.Msg) {
	if msg.Header != nil {
		if cid := msg.Header.Get(hdrConvo); cid != "" {
			s.db.convos.drop(cid) // before the client hears of the change (convcache.go)
		}
		if msg.Header.Get(hdrSkipSession) == s.id {
			return
		}
		if reason := msg.Header.Get(hdrClose); reason != "" {
			if tok := msg.Header.Get(hdrCloseToken); tok != "" && tok != s.tokenHash {
				return
			}
			if len(msg.Data) > 0 {
				s.sendRaw(msg.Data)
			}
			s.close(closeRevoked, reason)
			return
		}
	}
	if isSequence(msg) { // the frames of a group (groupcommit.go)
		for frame := range bytes.SplitSeq(msg.Data[1:], []byte{frameSeparator}) {
			s.sendRaw(frame)
			s.db.metrics.deliveredPayload(frame)
		}
		return
	}
	s.sendRaw(msg.Data)
	s.db.metrics.deliveredPayload(msg.Data)
}

// commandFunc handles one command; it returns the direct reply (nil for a plain acknowledgement)
// or an error whose text the client sees.
type commandFunc func(ctx context.Context, s *Session, req *Request) (reply, error)

// functs maps every command a logged-in session may send to its handler: the single index of
// commands. Handlers live in database_functions_*.go by topic.
var functs map[string]commandFunc

func init() {
	functs = map[string]commandFunc{
		// conversations (database_functions_convo.go)
		"CreateConversation":         createConversation,
		"AddUsersToConversation":     addUsersToConversation,
		"RemoveUserFromConversation": removeUserFromConversation,
		"ChangeConvoName":            changeConvoName,
		"UpdateConvoFiles":           updateConvoFiles,
		"UpdateUserStatus":           updateUserStatus,
		"UpdateUnreadCount":          updateUnreadCount,
		"UpdateConvoMtime":           updateConvoMtime,
		// files and quota (database_functions_files.go)
		"GetS3PolicyData": getS3PolicyData,
		"RemoveConvoFile": removeConvoFile,
		"GetFileToken":    getFileToken,
		"AddToQuota":      quotaCommand(false),
		"AddToQuotaUsed":  quotaCommand(true),
		// messages (database_functions_messages.go)
		"SendMessage":          sendMessage,
		"GetConvoData":         getConvoData,
		"GetMoreConvoMessages": getMoreConvoMessages,
		"GetAllConvoData":      getAllConvoData,
		"SyncConvos":           syncConvos,
		// edits, deletions, reactions (database_functions_edit.go) and search (search.go)
		"EditMessage":    editMessage,
		"DeleteMessage":  deleteMessage,
		"React":          react,
		"SearchMessages": searchMessages,
		// scheduled messages (database_functions_scheduled.go)
		"AddScheduledMessage":        addScheduledMessage,
		"RemoveScheduledMessage":     removeScheduledMessage,
		"RemoveAllScheduledMessages": removeAllScheduledMessages,
		// account (database_functions_account.go)
		"Logout":               logout,
		"DeleteUser":           deleteUser,
		"ChangeUserPassword":   changeUserPassword,
		"ChangeProfilePic":     changeProfilePic,
		"ChangeUserPhone":      changeUserPhone,
		"ChangeUserEmail":      changeUserEmail,
		"SaveAutoreplyMessage": saveAutoreplyMessage,
		"GetUserByUsername":    getUserByUsername,
		"GetUserByEmail":       getUserByEmail,
		"MatchUsers":           matchUsers,
		"GetUserView":          getUserView,
		// verifying e-mail and phone (database_functions_verify.go)
		"SendVerificationCode": sendVerificationCode,
		"VerifyContact":        verifyContact,
		"AddAndroidDev":        deviceCommand("android", "add"),
		"ChangeAndroidDev":     deviceCommand("android", "change"),
		"RemoveAndroidDev":     deviceCommand("android", "remove"),
		"AddIosDev":            deviceCommand("ios", "add"),
		"ChangeIosDev":         deviceCommand("ios", "change"),
		"RemoveIosDev":         deviceCommand("ios", "remove"),
		"AddFireosDev":         deviceCommand("fireos", "add"),
		"ChangeFireosDev":      deviceCommand("fireos", "change"),
		"RemoveFireosDev":      deviceCommand("fireos", "remove"),
		"AddWebDev":            addWebDev,    // push_webpush.go
		"RemoveWebDev":         removeWebDev, // push_webpush.go
		"GetPushConfig":        getPushConfig,
		// friends (database_functions_friends.go)
		"AddFriend":           addFriend,
		"AcceptFriendRequest": acceptFriendRequest,
		"DenyFriendRequest":   denyFriendRequest,
		"RemoveFriend":        removeFriend,
		// mail (database_functions_mail.go)
		"GetAllEmails":        getAllEmails,
		"GetEmail":            getEmail, // mail_read.go
		"MarkEmailUnread":     markEmail("unread", func(m *MailRequest) *bool { return m.Unread }),
		"MarkEmailStarred":    markEmail("starred", func(m *MailRequest) *bool { return m.Starred }),
		"MarkEmailDeleted":    markEmail("deleted", func(m *MailRequest) *bool { return m.Deleted }),
		"RemoveDeletedEmails": removeDeletedEmails,
		"AddNewDraft":         addNewDraft,
		"SendEmailMessage":    sendEmailMessage,
		"SendEmailInvite":     sendEmailInvite,
		// blocking (database_functions_block.go)
		"BlockUser":   blockUser,
		"UnblockUser": unblockUser,
	}
}
