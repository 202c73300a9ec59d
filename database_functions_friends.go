package main

import (
	"context"
	"slices"
	"strings"
	"unicode/utf8"
)

// Friend commands. Each keeps both users' Friends / IncomingPendingFriends /
// OutgoingPendingFriends consistent: both records change through generation compare-and-set, and
// a request that meets the other user's request becomes a friendship on both sides, so two
// users befriending each other at once end as friends.

const (
	maxFriendMessage   = 500
	maxIncomingFriends = 500 // pending requests a user can have: nobody can grow another's record without end
)

// friendList names one of a user's three lists.
type friendList func(u *UserRecord) *[]FriendView

func friendsOf(u *UserRecord) *[]FriendView  { return &u.Friends }
func incomingOf(u *UserRecord) *[]FriendView { return &u.Incoming }
func outgoingOf(u *UserRecord) *[]FriendView { return &u.Outgoing }

func indexOf(list []FriendView, name string) int {
	return slices.IndexFunc(list, func(f FriendView) bool { return strings.EqualFold(f.Username, name) })
}

func has(u *UserRecord, l friendList, name string) bool { return indexOf(*l(u), name) >= 0 }

// drop removes name from a list and reports whether it was there.
func drop(u *UserRecord, l friendList, name string) bool {
	i := indexOf(*l(u), name)
	if i >= 0 {
		*l(u) = slices.Delete(*l(u), i, i+1)
	}
	return i >= 0
}

func add(u *UserRecord, l friendList, f FriendView) {
	if !has(u, l, f.Username) {
		*l(u) = append(*l(u), f)
	}
}

// friendTarget is the other user a friend command names.
func (s *Session) friendTarget(ctx context.Context, name string) (*UserRecord, error) {
	return s.otherUser(ctx, name, "You cannot befriend yourself.")
}

// befriend records, on u's side, that u and other are friends.
func befriend(u *UserRecord, other FriendView) {
	drop(u, incomingOf, other.Username)
	drop(u, outgoingOf, other.Username)
	add(u, friendsOf, other)
}

func addFriend(ctx context.Context, s *Session, req *Request) (reply, error) {
	if utf8.RuneCountInString(req.Message) > maxFriendMessage {
		return nil, clientErr("The message is at most %d characters.", maxFriendMessage)
	}
	target, err := s.friendTarget(ctx, req.FriendUID)
	if err != nil {
		return nil, err
	}
	if isBlocked(target, s.user) || len(target.Incoming) >= maxIncomingFriends {
		return nil, clientErr("%s cannot be asked to be your friend.", target.Username)
	}
	var me FriendView
	_, err = s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		me = FriendView{Username: u.Username, ProfilePic: u.ProfilePic, Message: req.Message}
		switch {
		case has(u, friendsOf, target.Username):
			return clientErr("You are friends already.")
		case has(u, outgoingOf, target.Username):
			return clientErr("Friend request already sent.")
		case has(u, incomingOf, target.Username):
			befriend(u, FriendView{Username: target.Username, ProfilePic: target.ProfilePic})
		default:
			add(u, outgoingOf, FriendView{Username: target.Username, ProfilePic: target.ProfilePic})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.changeFriend(ctx, target.Username, func(t *UserRecord) error {
		if has(t, outgoingOf, me.Username) || has(t, friendsOf, me.Username) {
			befriend(t, FriendView{Username: me.Username, ProfilePic: me.ProfilePic})
		} else {
			add(t, incomingOf, me)
		}
		return nil
	})
	return nil, err
}

func acceptFriendRequest(ctx context.Context, s *Session, req *Request) (reply, error) {
	target, err := s.friendTarget(ctx, req.FriendUID)
	if err != nil {
		return nil, err
	}
	var me FriendView
	_, err = s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		me = FriendView{Username: u.Username, ProfilePic: u.ProfilePic}
		if !has(u, incomingOf, target.Username) {
			return clientErr("No friend request from %s.", target.Username)
		}
		befriend(u, FriendView{Username: target.Username, ProfilePic: target.ProfilePic})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return nil, s.changeFriend(ctx, target.Username, func(t *UserRecord) error {
		befriend(t, me)
		return nil
	})
}

func denyFriendRequest(ctx context.Context, s *Session, req *Request) (reply, error) {
	return s.unlink(ctx, req.FriendUID, incomingOf, "No friend request from %s.")
}

func removeFriend(ctx context.Context, s *Session, req *Request) (reply, error) {
	// Removing also withdraws a request not yet answered.
	return s.unlink(ctx, req.FriendUID, func(u *UserRecord) *[]FriendView {
		if i := indexOf(u.Outgoing, req.FriendUID); i >= 0 && indexOf(u.Friends, req.FriendUID) < 0 {
			return &u.Outgoing
		}
		return &u.Friends
	}, "%s is not your friend.")
}

// unlink removes the target from the user's list l (an error if absent) and the user from
// every list of the target.
func (s *Session) unlink(ctx context.Context, name string, l friendList, absent string) (reply, error) {
	target, err := s.friendTarget(ctx, name)
	if err != nil {
		return nil, err
	}
	_, err = s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		if !drop(u, l, target.Username) {
			return clientErr(absent, target.Username)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return nil, s.changeFriend(ctx, target.Username, func(t *UserRecord) error {
		forget(t, s.user)
		return nil
	})
}

// forget removes name from every friend list of u.
func forget(u *UserRecord, name string) {
	drop(u, friendsOf, name)
	drop(u, incomingOf, name)
	drop(u, outgoingOf, name)
}

// changeFriend applies fn to the other user's record, then pushes UpdateUser to both users'
// sessions (the acting session gets its view as the reply's effect too).
func (s *Session) changeFriend(ctx context.Context, other string, fn func(*UserRecord) error) error {
	t, err := s.db.updateUser(ctx, other, fn)
	if err != nil && !isNotFound(err) { // deleted meanwhile: nothing to keep consistent
		return err
	}
	if t != nil {
		if err := s.db.publishUserView(ctx, t, ""); err != nil {
			return err
		}
	}
	me, err := s.db.getUser(ctx, s.user)
	if err != nil {
		return err
	}
	return s.db.publishUserView(ctx, me, "")
}

// forgetFriend removes a deleted user from a friend's lists and tells the friend.
func (db *Database) forgetFriend(ctx context.Context, friend, deleted string) error {
	u, err := db.updateUser(ctx, friend, func(u *UserRecord) error {
		forget(u, deleted)
		return nil
	})
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return db.publishUserView(ctx, u, "")
}
