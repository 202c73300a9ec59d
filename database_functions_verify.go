package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"
)

// Verifying an e-mail address or phone number. An address given at registration or with
// ChangeUserEmail / ChangeUserPhone is the user's, unverified: contact discovery (MatchUsers,
// GetUserByEmail) finds nobody by it, and it claims nothing, so nobody can squat someone
// else's address. SendVerificationCode mails a six-digit code to it (to a phone through its
// carrier's e-mail-to-SMS gateway); VerifyContact with the code claims the address's lookup
// record, create-only, which keeps verified addresses unique.

const (
	codeTTL       = 15 * time.Minute
	codeTries     = 5  // wrong codes before the code is void
	codesPerDay   = 10 // codes a user may have sent per day
	kindEmail     = "email"
	kindPhone     = "phone"
	codeSubject   = "Your pingedchat code"
	codeBodyFmt   = "Your pingedchat code for %s is %s.\n\nIt expires in %d minutes. If you did not ask for it, ignore this message.\n"
	codeSMSFmt    = "pingedchat code: %s"
	codeDigits    = 6
	codeExhausted = "Too many wrong codes; ask for a new one."
)

// contact is what a kind of verification is about: the user's field, its lookup key, and its
// verified flag.
type contact struct {
	field    func(*UserRecord) *string
	key      func(string) Key
	verified func(*UserRecord) *bool
	used     string
}

func (k contact) value(u *UserRecord) string { return *k.field(u) }

var contacts = map[string]contact{
	kindEmail: {func(u *UserRecord) *string { return &u.Email }, emailKey,
		func(u *UserRecord) *bool { return &u.EmailVerified }, "E-mail address already used."},
	kindPhone: {func(u *UserRecord) *string { return &u.Phone }, phoneKey,
		func(u *UserRecord) *bool { return &u.PhoneVerified }, "Phone number already used."},
}

func sendVerificationCode(ctx context.Context, s *Session, req *Request) (reply, error) {
	k, ok := contacts[req.Kind]
	if !ok {
		return nil, clientErr(`kind must be "email" or "phone"`)
	}
	u, err := s.db.getUser(ctx, s.user)
	if err != nil {
		return nil, err
	}
	value := k.value(u)
	if value == "" {
		return nil, clientErr("You have no %s to verify.", req.Kind)
	}
	if *k.verified(u) {
		return nil, clientErr("Verified already.")
	}
	to := value
	if req.Kind == kindPhone {
		if to, err = smsAddress(value, req.Carrier); err != nil {
			return nil, err
		}
	}
	if !s.db.mailConfigured() {
		return nil, errMailNotConfigured
	}
	if !s.db.limits.codes.spend(s.upper, 1) {
		return nil, clientErr("Too many codes today; try again tomorrow.")
	}
	code := newCode()
	if _, err := s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		if u.Codes == nil {
			u.Codes = map[string]*PendingCode{}
		}
		u.Codes[req.Kind] = &PendingCode{Value: value, Hash: tokenHash(code), Expires: formatTime(time.Now().Add(codeTTL))}
		if req.Kind == kindPhone {
			u.Codes[req.Kind].Carrier = strings.ToLower(strings.TrimSpace(req.Carrier))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	m := outMail{To: []string{to}, Subject: codeSubject, Body: fmt.Sprintf(codeBodyFmt, value, code, int(codeTTL.Minutes()))}
	if req.Kind == kindPhone {
		m.Subject, m.Body = "", fmt.Sprintf(codeSMSFmt, code) // an SMS shows the subject too
	}
	if err := s.db.sendMail(ctx, m); err != nil {
		slog.Error("sending a verification code", "user", s.user, "err", err)
		return nil, clientErr("Sending the code failed; try again later.")
	}
	return nil, nil
}

// newCode is a uniformly random six-digit code.
func newCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return fmt.Sprintf("%0*d", codeDigits, n.Int64())
}

func verifyContact(ctx context.Context, s *Session, req *Request) (reply, error) {
	k, ok := contacts[req.Kind]
	if !ok {
		return nil, clientErr(`kind must be "email" or "phone"`)
	}
	value, err := s.checkCode(ctx, req.Kind, req.Code, k)
	if err != nil {
		return nil, err
	}
	if err := s.db.claimLookup(ctx, k.key(value), s.user, k.used); err != nil {
		return nil, err
	}
	rep, err := s.changeSelf(ctx, func(u *UserRecord) error {
		if k.value(u) != value {
			return clientErr("The %s changed meanwhile; verify the new one.", req.Kind)
		}
		*k.verified(u) = true
		if p := u.Codes[req.Kind]; req.Kind == kindPhone && p != nil && p.Carrier != "" {
			u.Carrier = p.Carrier // the code reached the phone through it, so it is right
		}
		delete(u.Codes, req.Kind)
		return nil
	})
	if err != nil {
		s.db.releaseLookup(ctx, k.key(value), s.user)
		return nil, err
	}
	s.db.forgetSMS(s.user)
	return rep, nil
}

// checkCode compares a code with the pending one, counting wrong tries, and returns the value
// it was sent to.
func (s *Session) checkCode(ctx context.Context, kind, code string, k contact) (string, error) {
	var value string
	var verdict error
	_, err := s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		p := u.Codes[kind]
		exp, perr := time.Time{}, error(nil)
		if p != nil {
			exp, perr = parseTime(p.Expires)
		}
		switch {
		case p == nil || perr != nil || time.Now().After(exp) || p.Value != k.value(u):
			verdict = clientErr("No code is pending for this %s; ask for one.", kind)
			return errNoChange
		case p.Tries >= codeTries:
			verdict = clientErr(codeExhausted)
			return errNoChange
		case subtle.ConstantTimeCompare([]byte(tokenHash(code)), []byte(p.Hash)) != 1:
			p.Tries++
			verdict = clientErr("Wrong code.")
			if p.Tries >= codeTries {
				verdict = clientErr(codeExhausted)
			}
			return nil
		}
		value, verdict = p.Value, nil
		return errNoChange
	})
	if err != nil {
		return "", err
	}
	return value, verdict
}

// claimLookup makes key name user, unless it names someone else.
func (db *Database) claimLookup(ctx context.Context, key Key, user, used string) error {
	err := putRecord(ctx, db.quick, key, &LookupRecord{Username: user}, PutOptions{Mode: CreateOnly})
	if !errors.Is(err, ErrExists) {
		return err
	}
	l, _, err := getRecord[LookupRecord](ctx, db.quick, key)
	if err != nil {
		return err
	}
	if upperName(l.Username) != upperName(user) {
		return clientErr("%s", used)
	}
	return nil
}
