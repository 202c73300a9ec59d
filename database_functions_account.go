package main

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/pquerna/ffjson/ffjson"
	"golang.org/x/crypto/bcrypt"
)

// Account commands: the user view, logout.

// maxUnreadCount caps counted unread messages, so that a long-unread conversation costs a bounded
// index scan; clients show it as "999+".
const maxUnreadCount = 999

// userView is what the user sees of itself (DESIGN §3.3). Besides the user's record it costs
// one quick-store read of the conversations' records (those not cached) and one batch of
// PostgreSQL queries: a resume after a restart should not wait for a dozen round trips. The
// conversations' activity comes from the user's hub when another session here read it lately.
func (db *Database) userView(ctx context.Context, u *UserRecord) (*UserView, error) {
	v := &UserView{
		Username: u.Username, Email: u.Email, Phone: u.Phone, AutoreplyMessage: u.AutoreplyMessage,
		Friends: nonNil(u.Friends), IncomingPendingFriends: nonNil(u.Incoming),
		OutgoingPendingFriends: nonNil(u.Outgoing), ProfilePic: u.ProfilePic,
		Quota: u.Quota, QuotaUsed: u.QuotaUsed, Blocked: nonNil(u.Blocked),
		EmailVerified: u.EmailVerified, PhoneVerified: u.PhoneVerified, Carrier: u.Carrier,
		MailAddress: db.mailAddress(u.Username), ScheduledMessages: []ScheduledView{},
	}
	convos, err := db.getConvos(ctx, mapKeys(u.Convos))
	if err != nil {
		return nil, err
	}
	summaries, bases := convoSummaries(u, convos)
	b := &pgx.Batch{}
	queueUnreadEmails(b, u.Username, &v.UnreadEmails)     // database_functions_mail.go
	queueScheduledOf(b, u.Username, &v.ScheduledMessages) // database_functions_scheduled.go
	upper := upperName(u.Username)
	filled, gen := db.hubs.cachedActivity(upper, summaries, bases) // activity.go
	queueActivity(b, u.Username, summaries, bases, filled)
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	db.hubs.storeActivity(upper, gen, db.nc.Status() == nats.CONNECTED, summaries, bases, filled)
	v.CIDs = finishSummaries(u, summaries, bases)
	return v, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// convoSummaries lists the conversations the user is still a member of, with the time after
// which each one's messages count as unread.
func convoSummaries(u *UserRecord, convos []*ConvoRecord) (out []ConvoSummary, bases []string) {
	out = make([]ConvoSummary, 0, len(convos))
	bases = make([]string, 0, len(convos))
	for _, c := range convos {
		if c == nil || !c.isMember(u.Username) {
			continue // left or deleted meanwhile
		}
		out = append(out, ConvoSummary{CID: c.CID, Name: c.Name, MTime: c.Created})
		bases = append(bases, unreadBase(c.ReadTimes[upperName(u.Username)], u.Convos[c.CID]))
	}
	return out, bases
}

// finishSummaries adds the unread counts the user set, and sorts most recent first.
func finishSummaries(u *UserRecord, out []ConvoSummary, bases []string) []ConvoSummary {
	for i := range out {
		if uc := u.Convos[out[i].CID]; uc != nil && uc.UnreadAt != "" && uc.UnreadAt == bases[i] {
			out[i].UnreadCount = min(out[i].UnreadCount+uc.Unread, maxUnreadCount)
		}
	}
	slices.SortFunc(out, func(a, b ConvoSummary) int { return cmp.Compare(b.MTime, a.MTime) })
	return out
}

// unreadBase is the time after which messages count as unread: the read time, or the time an
// unread count was set explicitly, whichever is later.
func unreadBase(readTime string, uc *UserConvo) string {
	if uc != nil && uc.UnreadAt > readTime {
		return uc.UnreadAt
	}
	return readTime
}

// getConvos reads several conversation records, from the cache where it may and the others in
// one quick-store call; a missing one is nil.
func (db *Database) getConvos(ctx context.Context, cids []string) ([]*ConvoRecord, error) {
	out := make([]*ConvoRecord, len(cids))
	var keys []Key
	var at []int
	for i, cid := range cids {
		if out[i] = db.convos.get(cid); out[i] == nil {
			keys, at = append(keys, convoKey(cid)), append(at, i)
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	epoch := db.convos.currentEpoch()
	recs, err := db.quick.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	cache := db.nc.Status() == nats.CONNECTED
	for j, rec := range recs {
		if rec == nil {
			continue
		}
		c, err := decodeRecord[ConvoRecord](keys[j], rec)
		if err != nil {
			return nil, err
		}
		out[at[j]] = c
		if cache {
			db.convos.put(c.CID, c, epoch)
		}
	}
	return out, nil
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// logout revokes the session's resume token and closes every session that uses it.
func logout(ctx context.Context, s *Session, _ *Request) (reply, error) {
	if err := s.db.revokeTokens(ctx, s.user, []string{s.tokenHash}, "logged out"); err != nil {
		return nil, err
	}
	if _, err := s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		i := slices.Index(u.Tokens, s.tokenHash)
		if i < 0 {
			return errNoChange
		}
		u.Tokens = slices.Delete(u.Tokens, i, i+1)
		return nil
	}); err != nil {
		return nil, err
	}
	s.closeAfterReply = "logged out"
	return nil, nil
}

// publishUserView pushes UpdateUser (the user's own view) to the user's sessions, except the
// session with id skip.
func (db *Database) publishUserView(ctx context.Context, u *UserRecord, skip string) error {
	v, err := db.userView(ctx, u)
	if err != nil {
		return err
	}
	v.Cmd = "UpdateUser"
	payload, err := ffjson.Marshal(v)
	if err != nil {
		return err
	}
	db.publish([]string{u.Username}, payload, skip)
	ffjson.Pool(payload)
	return nil
}

// changeSelf updates the session's user with fn, tells its other sessions, and answers with
// the new user view.
func (s *Session) changeSelf(ctx context.Context, fn func(*UserRecord) error) (reply, error) {
	u, err := s.db.updateUser(ctx, s.user, fn)
	if err != nil {
		return nil, err
	}
	if err := s.db.publishUserView(ctx, u, s.id); err != nil {
		return nil, err
	}
	return s.db.userView(ctx, u)
}

// checkPasswordOf verifies the session user's password.
func (s *Session) checkPasswordOf(ctx context.Context, password string) (*UserRecord, error) {
	if len(password) > maxPassword {
		return nil, clientErr("Wrong password.") // bcrypt would compare only its first 72 bytes
	}
	g, err := s.db.limits.guesses.begin(s.upper, s.remote)
	if err != nil {
		return nil, err
	}
	u, err := s.db.getUser(ctx, s.user)
	if err != nil {
		g.abort()
		return nil, err
	}
	right := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
	g.end(right)
	if !right {
		return nil, clientErr("Wrong password.")
	}
	return u, nil
}

func changeUserPassword(ctx context.Context, s *Session, req *Request) (reply, error) {
	if _, err := s.checkPasswordOf(ctx, req.OldPassword); err != nil {
		return nil, err
	}
	if err := checkPassword(req.NewPassword); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.NewPassword), s.db.cfg.bcryptCost)
	if err != nil {
		return nil, err
	}
	u, err := s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		u.PasswordHash = string(hash)
		u.SessionEpoch++ // revokes every resume token, this session's too …
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.db.recordSessionEpoch(ctx, u); err != nil {
		return nil, err
	}
	s.db.publishClose(u.Username, nil, "password changed", s.id)
	token, hashed, err := s.db.newSession(ctx, u) // … so this session gets a new one
	if err != nil {
		return nil, err
	}
	s.tokenHash = hashed
	v, err := s.db.userView(ctx, u)
	if err != nil {
		return nil, err
	}
	v.Session = token
	return v, nil
}

// changeContact sets the user's e-mail address or phone number, unverified: the lookup of a
// verified old one is released, and the new one claims nothing until VerifyContact.
func (s *Session) changeContact(ctx context.Context, kind, value, carrier string) (reply, error) {
	k := contacts[kind]
	if value != "" {
		if l, _, err := getRecord[LookupRecord](ctx, s.db.quick, k.key(value)); err == nil && upperName(l.Username) != s.upper {
			return nil, clientErr("%s", k.used)
		} else if err != nil && !isNotFound(err) {
			return nil, err
		}
	}
	var old string
	var wasVerified bool
	rep, err := s.changeSelf(ctx, func(u *UserRecord) error {
		old, wasVerified = k.value(u), *k.verified(u)
		if kind == kindPhone && carrier != "" && carrier != u.Carrier {
			u.Carrier = carrier // the SMS bridge's; the number stays verified
			if old == value {
				return nil
			}
		}
		if old == value {
			return errNoChange
		}
		*k.field(u) = value
		*k.verified(u) = false
		delete(u.Codes, kind)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if old != value && wasVerified {
		s.db.releaseLookup(ctx, k.key(old), s.user)
	}
	s.db.forgetSMS(s.user)
	return rep, nil
}

func changeUserEmail(ctx context.Context, s *Session, req *Request) (reply, error) {
	email, err := normalEmail(req.Email)
	if err != nil {
		return nil, err
	}
	return s.changeContact(ctx, kindEmail, email, "")
}

func changeUserPhone(ctx context.Context, s *Session, req *Request) (reply, error) {
	phone, err := normalPhone(req.Phone)
	if err != nil {
		return nil, err
	}
	carrier := strings.ToLower(strings.TrimSpace(req.Carrier))
	if _, ok := smsGateways[carrier]; carrier != "" && !ok {
		return nil, clientErr("Unknown carrier %q.", truncate(req.Carrier, 30))
	}
	return s.changeContact(ctx, kindPhone, phone, carrier)
}

func saveAutoreplyMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	msg := strings.TrimSpace(req.Message)
	if err := checkContent(msg); msg != "" && err != nil {
		return nil, err
	}
	rep, err := s.changeSelf(ctx, func(u *UserRecord) error { u.AutoreplyMessage = msg; return nil })
	if err != nil {
		return nil, err
	}
	v := rep.(*UserView)
	// Copy it into each conversation, so that senders find it without reading this record;
	// changing it re-arms it everywhere.
	for _, c := range v.CIDs {
		if _, err := s.db.updateConvo(ctx, c.CID, func(c *ConvoRecord) error {
			setAutoreply(c, s.user, msg)
			return nil
		}); err != nil && !isNotFound(err) {
			return nil, err
		}
	}
	return rep, nil
}

// setAutoreply records a member's autoreply in a conversation record and re-arms it.
func setAutoreply(c *ConvoRecord, user, msg string) {
	key := upperName(user)
	delete(c.AutoreplySent, key)
	if msg == "" {
		delete(c.Autoreplies, key)
		return
	}
	if c.Autoreplies == nil {
		c.Autoreplies = map[string]string{}
	}
	c.Autoreplies[key] = msg
}

// Contact lookups are budgeted per user (-lookups-per-day), and single lookups that find
// nobody are throttled further, so that no account can map everyone's addresses and numbers.

// spendLookups takes n lookups from the user's daily budget.
func (s *Session) spendLookups(n int) error {
	if !s.db.limits.lookups.spend(s.upper, n) {
		return clientErr("Too many lookups today; try again tomorrow.")
	}
	return nil
}

// lookupOne runs a single lookup within the budgets: a miss costs a token of the miss budget.
func (s *Session) lookupOne(find func() (*UserRecord, error)) (reply, error) {
	if !s.db.limits.lookupMisses.has(s.upper) {
		return nil, clientErr("Too many lookups of unknown users; try again in a minute.")
	}
	if err := s.spendLookups(1); err != nil {
		return nil, err
	}
	u, err := find()
	var ce *ClientError
	if errors.As(err, &ce) || isNotFound(err) {
		s.db.limits.lookupMisses.spend(s.upper, 1)
		return nil, clientErr("No such user.")
	}
	if err != nil {
		return nil, err
	}
	return &PublicUser{Username: u.Username, ProfilePic: u.ProfilePic}, nil
}

func getUserByUsername(ctx context.Context, s *Session, req *Request) (reply, error) {
	return s.lookupOne(func() (*UserRecord, error) {
		if !validUsername(req.Username) {
			return nil, ErrNotFound
		}
		return s.db.getUser(ctx, req.Username)
	})
}

func getUserByEmail(ctx context.Context, s *Session, req *Request) (reply, error) {
	return s.lookupOne(func() (*UserRecord, error) {
		email, err := normalEmail(req.Email)
		if err != nil || email == "" {
			return nil, ErrNotFound
		}
		return s.db.userByLookup(ctx, emailKey(email))
	})
}

// userByLookup follows an e-mail or phone lookup record to its user.
func (db *Database) userByLookup(ctx context.Context, key Key) (*UserRecord, error) {
	l, _, err := getRecord[LookupRecord](ctx, db.quick, key)
	if err == nil {
		var u *UserRecord
		if u, err = db.getUser(ctx, l.Username); err == nil {
			return u, nil
		}
	}
	if isNotFound(err) {
		return nil, clientErr("No such user.")
	}
	return nil, err
}

const maxMatch = 500

func matchUsers(ctx context.Context, s *Session, req *Request) (reply, error) {
	if len(req.Phones)+len(req.Emails) > maxMatch {
		return nil, clientErr("At most %d phones and e-mails a call.", maxMatch)
	}
	type probe struct {
		key  Key
		view PublicUser
	}
	var probes []probe
	for _, p := range req.Phones {
		if phone, err := normalPhone(p.PhoneNum); err == nil && phone != "" {
			probes = append(probes, probe{phoneKey(phone), PublicUser{Phone: phone, Name: p.Name}})
		}
	}
	for _, e := range req.Emails {
		if email, err := normalEmail(e.Email); err == nil && email != "" {
			probes = append(probes, probe{emailKey(email), PublicUser{Email: email, Name: e.Name}})
		}
	}
	if err := s.spendLookups(len(probes)); err != nil {
		return nil, err
	}
	found := make([]*PublicUser, len(probes))
	err := forEachConcurrently(ctx, len(probes), func(i int) error {
		u, err := s.db.userByLookup(ctx, probes[i].key)
		var ce *ClientError
		if errors.As(err, &ce) {
			return nil // not a user
		}
		if err != nil {
			return err
		}
		v := probes[i].view
		v.Username, v.ProfilePic = u.Username, u.ProfilePic
		found[i] = &v
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep := &MatchedUsers{Users: []PublicUser{}}
	for _, f := range found {
		if f != nil {
			rep.Users = append(rep.Users, *f)
		}
	}
	return rep, nil
}

// forEachConcurrently runs fn(0…n-1) with at most 8 at a time and returns the first error.
func forEachConcurrently(ctx context.Context, n int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (u *UserRecord) upper() string { return upperName(u.Username) }

// Push-target devices: one list per platform.

const maxDevices = 20

// deviceCommand makes the Add/Change/Remove handler for one platform's push targets.
func deviceCommand(platform string, op string) commandFunc {
	return func(ctx context.Context, s *Session, req *Request) (reply, error) {
		dev := strings.TrimSpace(req.Device)
		if dev == "" || len(dev) > 512 {
			return nil, clientErr("device must be 1 to 512 characters")
		}
		dev, err := normalizeDevice(platform, dev)
		if err != nil {
			return nil, err
		}
		oldDev, _ := normalizeDevice(platform, strings.TrimSpace(req.OldDevice))
		_, err = s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
			if u.Devices == nil {
				u.Devices = map[string][]string{}
			}
			list := u.Devices[platform]
			switch op {
			case "add":
				if slices.Contains(list, dev) {
					return errNoChange
				}
				if len(list) >= maxDevices {
					return clientErr("at most %d %s devices", maxDevices, platform)
				}
				list = append(list, dev)
			case "change":
				i := slices.Index(list, oldDev)
				if i < 0 {
					return clientErr("old_device is not registered")
				}
				list[i] = dev
			case "remove":
				i := slices.Index(list, dev)
				if i < 0 {
					return errNoChange
				}
				list = slices.Delete(list, i, i+1)
			}
			u.Devices[platform] = list
			return nil
		})
		return nil, err
	}
}
