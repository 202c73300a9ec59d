package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/ffjson/ffjson"
)

// Conversation commands: creating conversations, their members, name, files and each member's
// read state.

var errNotMember = clientErr("not a member")

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func (c *ConvoRecord) isMember(name string) bool {
	return slices.ContainsFunc(c.Members, func(m string) bool { return strings.EqualFold(m, name) })
}

// memberConvo is the conversation req names, if the session's user belongs to it. Anyone else
// learns only "not a member", whether or not the conversation exists.
func (s *Session) memberConvo(ctx context.Context, cid string) (*ConvoRecord, error) {
	if !validCID(cid) {
		return nil, clientErr("invalid CID")
	}
	c, err := s.db.getConvo(ctx, cid)
	if isNotFound(err) {
		return nil, errNotMember
	}
	if err != nil {
		return nil, err
	}
	if !c.isMember(s.user) {
		return nil, errNotMember
	}
	return c, nil
}

// convoPush is a conversation's state as members see it.
func convoPush(cmd string, c *ConvoRecord, mtime string) *ConvoPush {
	p := &ConvoPush{Cmd: cmd, CID: c.CID, Name: c.Name, MTime: mtime, Files: nonNil(c.Files),
		Members: make([]MemberView, len(c.Members))}
	for i, m := range c.Members {
		p.Members[i] = MemberView{Username: m, ReadTime: c.ReadTimes[upperName(m)]}
	}
	return p
}

// publishConvo pushes the conversation's state to its members and to extra users.
func (s *Session) publishConvo(ctx context.Context, cmd string, c *ConvoRecord, extra ...string) error {
	mtime, err := s.db.convoMtime(ctx, c)
	if err != nil {
		return err
	}
	payload, err := ffjson.Marshal(convoPush(cmd, c, mtime))
	if err != nil {
		return err
	}
	s.db.publishAbout(c.CID, append(slices.Clone(c.Members), extra...), payload)
	ffjson.Pool(payload)
	return nil
}

// publishNewConvo tells the members of a conversation just created: its M_time is its
// creation time, with no need to ask its empty table.
func (s *Session) publishNewConvo(c *ConvoRecord) error {
	payload, err := ffjson.Marshal(convoPush("CreateConversation", c, c.Created))
	if err != nil {
		return err
	}
	s.db.publishAbout(c.CID, c.Members, payload)
	ffjson.Pool(payload)
	return nil
}

// convoMtime is the time of the conversation's newest message, or its creation time.
func (db *Database) convoMtime(ctx context.Context, c *ConvoRecord) (string, error) {
	var mt *time.Time
	err := db.pool.QueryRow(ctx, "SELECT max(m_time) FROM "+convTable(c.CID)).Scan(&mt)
	if err != nil {
		return "", fmt.Errorf("reading M_time of %s: %w", c.CID, err)
	}
	return mtimeOf(c, mt), nil
}

// mtimeOf is a conversation's M_time given its newest message's m_time (nil when it has none).
func mtimeOf(c *ConvoRecord, newest *time.Time) string {
	if newest == nil {
		return c.Created
	}
	return formatTime(*newest)
}

func checkConvoName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > maxConvoName || strings.ContainsRune(name, 0) {
		return "", clientErr("Conversation name must be at most %d characters.", maxConvoName)
	}
	if hasHiddenRune(name) {
		return "", errHiddenChars("A conversation's name")
	}
	return name, nil
}

// resolveUsers checks that every name is a user and returns their records, without duplicates
// (names compared without regard to case) and without the names in skip.
func (db *Database) resolveUsers(ctx context.Context, names []string, skip []string) ([]*UserRecord, error) {
	seen := map[string]bool{}
	for _, n := range skip {
		seen[upperName(n)] = true
	}
	var unique []string
	for _, n := range names {
		n = strings.TrimSpace(n)
		if seen[upperName(n)] {
			continue
		}
		if !validUsername(n) {
			return nil, clientErr("Invalid username %q.", truncate(n, 40))
		}
		seen[upperName(n)] = true
		unique = append(unique, n)
	}
	// The reads are independent: a few at a time, not one after the other.
	out := make([]*UserRecord, len(unique))
	err := forEachConcurrently(ctx, len(unique), func(i int) error {
		u, err := db.getUserData(ctx, unique[i])
		if isNotFound(err) {
			return clientErr("No such user: %s.", unique[i])
		}
		out[i] = u
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// creatorAndMembers reads the creator's record and the named members' at the same time (the
// creator's own failure comes first).
func (db *Database) creatorAndMembers(ctx context.Context, creator string, names []string) (*UserRecord, []*UserRecord, error) {
	var me *UserRecord
	var meErr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		me, meErr = db.getUserData(ctx, creator)
	}()
	others, err := db.resolveUsers(ctx, names, []string{creator})
	<-read
	if meErr != nil {
		return nil, nil, meErr
	}
	if err != nil {
		return nil, nil, err
	}
	return me, others, nil
}

// addMembers adds users to a conversation record, with their autoreplies.
func addMembers(c *ConvoRecord, users []*UserRecord) {
	for _, u := range users {
		if !c.isMember(u.Username) {
			c.Members = append(c.Members, u.Username)
			setAutoreply(c, u.Username, u.AutoreplyMessage)
		}
	}
}

func usernames(users []*UserRecord) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.Username
	}
	return out
}

func createConversation(ctx context.Context, s *Session, req *Request) (reply, error) {
	name, err := checkConvoName(req.Name)
	if err != nil {
		return nil, err
	}
	if len(req.Members) >= maxMembers {
		return nil, clientErr("A conversation has at most %d members.", maxMembers)
	}
	me, others, err := s.db.creatorAndMembers(ctx, s.user, req.Members)
	if err != nil {
		return nil, err
	}
	if s.db.tooManyConvos(me) {
		return nil, clientErr("You are in %d conversations, the most there can be; leave one first.", me.convoCount())
	}
	if err := s.mayAdd(others); err != nil {
		return nil, err
	}
	c := &ConvoRecord{CID: newCID(), Name: name, ReadTimes: map[string]string{}, Files: []string{},
		Created: formatTime(time.Now())}
	addMembers(c, append([]*UserRecord{me}, others...))
	if err := s.db.storeNewConvo(ctx, c); err != nil { // convo_create.go
		return nil, err
	}
	if err := s.publishNewConvo(c); err != nil {
		return nil, err
	}
	return &AckReply{OK: true, CID: c.CID}, nil
}

// joinConvo lists the conversation in each user's record, all at once (each is one atomic
// change of its own record).
func (db *Database) joinConvo(ctx context.Context, cid string, users []string) error {
	errs, err := db.addUsersConvo(ctx, users, cid)
	if err != nil {
		return fmt.Errorf("adding members to %s: %w", cid, err)
	}
	for i, u := range users {
		err := errs[i]
		if isNotFound(err) {
			// Deleted since it was named: its name must not stay in the conversation, where
			// a new account with that name would find it.
			err = db.dropMember(ctx, cid, u)
		}
		if err != nil {
			return fmt.Errorf("adding %s to %s: %w", u, cid, err)
		}
	}
	return nil
}

// dropMember removes a name from a conversation's members without telling anyone (for a user
// that no longer exists).
func (db *Database) dropMember(ctx context.Context, cid, user string) error {
	_, err := db.updateConvo(ctx, cid, func(c *ConvoRecord) error {
		i := slices.IndexFunc(c.Members, func(m string) bool { return strings.EqualFold(m, user) })
		if i < 0 {
			return errNoChange
		}
		c.Members = slices.Delete(c.Members, i, i+1)
		delete(c.ReadTimes, upperName(user))
		return nil
	})
	if isNotFound(err) {
		return nil
	}
	return err
}

// leaveConvo removes the conversation from a user's record.
func (db *Database) leaveConvo(ctx context.Context, cid, user string) error {
	err := db.removeUserConvo(ctx, user, cid)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("removing %s from %s: %w", user, cid, err)
	}
	return nil
}

func addUsersToConversation(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	added, err := s.db.resolveUsers(ctx, req.Members, c.Members)
	if err != nil {
		return nil, err
	}
	if len(added) == 0 {
		return nil, clientErr("Everyone named is a member already.")
	}
	if err := s.mayAdd(added); err != nil {
		return nil, err
	}
	c, err = s.db.updateConvo(ctx, c.CID, func(c *ConvoRecord) error {
		if !c.isMember(s.user) {
			return errNotMember
		}
		addMembers(c, added)
		if len(c.Members) > maxMembers {
			return clientErr("A conversation has at most %d members.", maxMembers)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.db.joinConvo(ctx, c.CID, usernames(added)); err != nil {
		return nil, err
	}
	s.db.postEvent(ctx, c, s.user, convoEvent{Type: "add", Users: usernames(added)})
	return nil, s.publishConvo(ctx, "AddUsersToConversation", c)
}

func removeUserFromConversation(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	target := req.Username
	if target == "" {
		target = s.user
	}
	if !c.isMember(target) {
		return nil, clientErr("%s is not a member.", truncate(target, 40))
	}
	return nil, s.db.removeMember(ctx, c.CID, s.user, target)
}

// removeMember takes target out of a conversation on actor's behalf and tells the remaining
// and the removed member. A conversation whose last member leaves is deleted.
func (db *Database) removeMember(ctx context.Context, cid, actor, target string) error {
	c, err := db.updateConvo(ctx, cid, func(c *ConvoRecord) error {
		if !c.isMember(actor) {
			return errNotMember
		}
		i := slices.IndexFunc(c.Members, func(m string) bool { return strings.EqualFold(m, target) })
		if i < 0 {
			return errNoChange
		}
		target = c.Members[i]
		c.Members = slices.Delete(c.Members, i, i+1)
		delete(c.ReadTimes, upperName(target))
		setAutoreply(c, target, "")
		return nil
	})
	if isNotFound(err) {
		return db.leaveConvo(ctx, cid, target)
	}
	if err != nil {
		return err
	}
	if err := db.leaveConvo(ctx, c.CID, target); err != nil {
		return err
	}
	if len(c.Members) > 0 {
		ev := convoEvent{Type: "leave"}
		if !strings.EqualFold(actor, target) {
			ev = convoEvent{Type: "remove", Users: []string{target}}
		}
		db.postEvent(ctx, c, actor, ev, target)
	}
	push := convoPush("RemoveUserFromConversation", c, "")
	push.Removed = []string{target}
	if push.MTime, err = db.convoMtime(ctx, c); err != nil {
		return err
	}
	payload, err := ffjson.Marshal(push)
	if err != nil {
		return err
	}
	db.publishAbout(c.CID, append(slices.Clone(c.Members), target), payload)
	ffjson.Pool(payload)
	if len(c.Members) == 0 {
		return db.deleteConvo(ctx, c.CID)
	}
	return nil
}

// deleteConvo removes a conversation nobody belongs to any more, with its messages.
func (db *Database) deleteConvo(ctx context.Context, cid string) error {
	defer db.convoChanged(cid)
	if _, err := db.quick.Delete(ctx, convoKey(cid), 0); err != nil {
		return fmt.Errorf("deleting conversation %s: %w", cid, err)
	}
	if _, err := db.pool.Exec(ctx, "DELETE FROM scheduled_messages WHERE cid = $1", cid); err != nil {
		return fmt.Errorf("deleting scheduled messages of %s: %w", cid, err)
	}
	db.dropConvoTable(ctx, cid)
	return nil
}

func changeConvoName(ctx context.Context, s *Session, req *Request) (reply, error) {
	if _, err := s.memberConvo(ctx, req.CID); err != nil {
		return nil, err
	}
	name, err := checkConvoName(req.Name)
	if err != nil {
		return nil, err
	}
	renamed := false
	c, err := s.db.updateConvo(ctx, req.CID, func(c *ConvoRecord) error {
		if !c.isMember(s.user) {
			return errNotMember
		}
		renamed = c.Name != name
		if !renamed {
			return errNoChange
		}
		c.Name = name
		return nil
	})
	if err != nil {
		return nil, err
	}
	if renamed {
		s.db.postEvent(ctx, c, s.user, convoEvent{Type: "rename", Name: name})
	}
	return nil, s.publishConvo(ctx, "ChangeConvoName", c)
}

func updateConvoFiles(ctx context.Context, s *Session, req *Request) (reply, error) {
	if _, err := s.memberConvo(ctx, req.CID); err != nil {
		return nil, err
	}
	if _, err := s.db.files.claim(ctx, s.user, req.CID, req.FileURL); err != nil {
		return nil, err
	}
	c, err := s.db.updateConvo(ctx, req.CID, func(c *ConvoRecord) error {
		if !c.isMember(s.user) {
			return errNotMember
		}
		if slices.Contains(c.Files, req.FileURL) {
			return errNoChange
		}
		if len(c.Files) >= maxFiles {
			return clientErr("A conversation lists at most %d files.", maxFiles)
		}
		c.Files = append(c.Files, req.FileURL)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The change, not the list: a push stays small however many files there are.
	payload, err := ffjson.Marshal(&FilesPush{Cmd: "UpdateConvoFiles", CID: c.CID, FileURL: req.FileURL})
	if err != nil {
		return nil, err
	}
	s.db.publish(c.Members, payload, "")
	ffjson.Pool(payload)
	return nil, nil
}

func updateUserStatus(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	if req.NewReadTime == "" && req.Typing == nil {
		return nil, clientErr("give NewReadTime or Typing")
	}
	push := &StatusPush{Cmd: "UpdateUserStatus", CID: c.CID, Username: s.user}
	push.Typing = req.Typing
	if req.NewReadTime != "" {
		if push.NewReadTime, err = s.advanceReadTime(ctx, c.CID, req.NewReadTime); err != nil {
			return nil, err
		}
	}
	payload, err := ffjson.Marshal(push)
	if err != nil {
		return nil, err
	}
	s.db.publish(c.Members, payload, "")
	ffjson.Pool(payload)
	return nil, nil
}

// advanceReadTime moves the user's read time forward (never back, never past now) and returns
// the read time in effect.
func (s *Session) advanceReadTime(ctx context.Context, cid, given string) (string, error) {
	t, err := parseTime(given)
	if err != nil {
		return "", err
	}
	if now := time.Now(); t.After(now) {
		t = now
	}
	rt := formatTime(t)
	key := upperName(s.user)
	c, err := s.db.updateConvo(ctx, cid, func(c *ConvoRecord) error {
		if !c.isMember(s.user) {
			return errNotMember
		}
		if c.ReadTimes[key] >= rt {
			return errNoChange
		}
		if c.ReadTimes == nil {
			c.ReadTimes = map[string]string{}
		}
		c.ReadTimes[key] = rt
		return nil
	})
	if err != nil {
		return "", err
	}
	return c.ReadTimes[key], nil
}

func updateUnreadCount(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	if req.UnreadCount == nil || *req.UnreadCount < 0 {
		return nil, clientErr("unread_count must be a number ≥ 0")
	}
	at, err := s.db.convoMtime(ctx, c)
	if err != nil {
		return nil, err
	}
	n := min(*req.UnreadCount, maxUnreadCount)
	return nil, s.db.setUnread(ctx, s.user, c.CID, n, at)
}

func updateConvoMtime(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	t, err := parseTime(req.MTime)
	if err != nil {
		return nil, err
	}
	return nil, s.db.setSynced(ctx, s.user, c.CID, formatTime(t))
}
