package main

import (
	"context"
	"slices"
	"strings"
)

// Blocking, and the limits on what one user can do to others (SECURITY.md): a user whom
// someone blocked cannot add them to conversations or ask to be their friend, nobody can be put
// in more than -max-convos-per-user conversations, and a user can create conversations or add
// people to them -convos-per-hour times an hour.

const maxBlocked = 1000

func blockUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	target, err := s.otherUser(ctx, req.Username, "You cannot block yourself.")
	if err != nil {
		return nil, err
	}
	return s.changeSelf(ctx, func(u *UserRecord) error {
		if isBlocked(u, target.Username) {
			return errNoChange
		}
		if len(u.Blocked) >= maxBlocked {
			return clientErr("You can block at most %d users.", maxBlocked)
		}
		u.Blocked = append(u.Blocked, target.Username)
		// A pending request from them goes with the block.
		drop(u, incomingOf, target.Username)
		return nil
	})
}

func unblockUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	if !validUsername(req.Username) {
		return nil, clientErr("No such user.")
	}
	return s.changeSelf(ctx, func(u *UserRecord) error {
		i := slices.IndexFunc(u.Blocked, func(b string) bool { return strings.EqualFold(b, req.Username) })
		if i < 0 {
			return errNoChange
		}
		u.Blocked = slices.Delete(u.Blocked, i, i+1)
		return nil
	})
}

// otherUser is the existing user, not the session's own (self says why not), that a command
// names.
func (s *Session) otherUser(ctx context.Context, name, self string) (*UserRecord, error) {
	if strings.EqualFold(name, s.user) {
		return nil, clientErr("%s", self)
	}
	if !validUsername(name) {
		return nil, clientErr("No such user.")
	}
	u, err := s.db.getUser(ctx, name)
	if isNotFound(err) {
		return nil, clientErr("No such user.")
	}
	return u, err
}

func isBlocked(u *UserRecord, name string) bool {
	return slices.ContainsFunc(u.Blocked, func(b string) bool { return strings.EqualFold(b, name) })
}

// mayAdd checks that the session's user may put others in a conversation: nobody who blocked
// them, nobody who is in too many conversations already, and within the hourly budget. The
// answer does not tell a block from a full list.
func (s *Session) mayAdd(others []*UserRecord) error {
	if len(others) == 0 {
		return nil // a conversation with oneself troubles nobody
	}
	for _, o := range others {
		if isBlocked(o, s.user) || s.db.tooManyConvos(o) {
			return clientErr("%s cannot be added to more conversations.", o.Username)
		}
	}
	if !s.db.limits.convoChanges.spend(s.upper, 1) {
		return clientErr("Too many new conversations this hour; try again later.")
	}
	return nil
}

func (db *Database) tooManyConvos(u *UserRecord) bool {
	return db.cfg.MaxConvosPerUser > 0 && u.convoCount() >= db.cfg.MaxConvosPerUser
}
