package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The commands of DESIGN §3.1, answered before login.

func createUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	// Everything cheap first: a taken name or bad input costs no bcrypt and no budget.
	if err := s.db.checkNewUser(ctx, req); err != nil {
		return nil, err
	}
	if !s.db.limits.registrations.spend(s.remote, 1) {
		return nil, clientErr("Too many new accounts from your address today; try again tomorrow.")
	}
	u, err := s.db.newUserRecord(req)
	if err != nil {
		return nil, err
	}
	if err := putRecord(ctx, s.db.quick, userKey(u.Username), u, PutOptions{Mode: CreateOnly}); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, clientErr("Username already taken.")
		}
		return nil, err
	}
	return s.startSession(ctx, u, "")
}

// checkUsername tells the registration form, while the name is typed, whether it is free. It
// reveals nothing CreateUser would not (it answers "taken" before any password work too), and
// costs a per-address budget so that it is no cheaper a way to list the users.
func checkUsername(ctx context.Context, s *Session, req *Request) (reply, error) {
	if !validUsername(req.Username) {
		return nil, clientErr("Invalid username: use 3 to 32 letters, digits or underscores.")
	}
	if !s.db.limits.nameChecks.spend(s.remote, 1) {
		return nil, clientErr("Too many checks from your address; try again later.")
	}
	if s.db.reservedName(req.Username) {
		return &NameCheck{Username: req.Username, Available: false}, nil
	}
	_, err := s.db.getUserData(ctx, req.Username)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	return &NameCheck{Username: req.Username, Available: isNotFound(err)}, nil
}

// checkNewUser refuses a CreateUser request whose name is invalid or taken or whose fields are
// invalid, before any password is hashed.
func (db *Database) checkNewUser(ctx context.Context, req *Request) error {
	if !validUsername(req.Username) {
		return clientErr("Invalid username: use 3 to 32 letters, digits or underscores.")
	}
	if db.reservedName(req.Username) {
		return clientErr("The name %q is reserved for the server's own mail; choose another.", req.Username)
	}
	if err := checkPassword(req.Password); err != nil {
		return err
	}
	email, err := normalEmail(req.Email)
	if err != nil {
		return err
	}
	phone, err := normalPhone(req.Phone)
	if err != nil {
		return err
	}
	_, err = db.quick.Get(ctx, userKey(req.Username))
	switch {
	case err == nil:
		return clientErr("Username already taken.")
	case !isNotFound(err):
		return err
	}
	// An address or number given here is unverified: it claims nothing yet (see
	// database_functions_verify.go), but one that someone has verified is taken.
	return db.lookupsFree(ctx, &UserRecord{Email: email, Phone: phone})
}

// newUserRecord makes the record to store for a CreateUser request that checkNewUser passed.
func (db *Database) newUserRecord(req *Request) (*UserRecord, error) {
	email, err := normalEmail(req.Email)
	if err != nil {
		return nil, err
	}
	phone, err := normalPhone(req.Phone)
	if err != nil {
		return nil, err
	}
	quests, err := db.hashSecQuests(req.SecQuests)
	if err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), db.cfg.bcryptCost)
	if err != nil {
		return nil, err
	}
	u := &UserRecord{
		Username: req.Username, PasswordHash: string(hash), Email: email, Phone: phone,
		SecQuests: quests, Convos: map[string]*UserConvo{}, Quota: db.cfg.DefaultQuota,
		Created: formatTime(time.Now()), Devices: map[string][]string{}, UserID: randomToken(),
	}
	if tok := strings.TrimSpace(req.Token); tok != "" && len(tok) <= 256 {
		u.Devices["web"] = []string{tok}
	}
	return u, nil
}

// hashSecQuests checks that there are none or two security questions and hashes the answers.
func (db *Database) hashSecQuests(qs []SecQuest) ([]SecQuest, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	if len(qs) != 2 {
		return nil, clientErr("Give two security questions with their answers.")
	}
	out := make([]SecQuest, len(qs))
	for i, q := range qs {
		question, answer := strings.TrimSpace(q.Question), normalAnswer(q.Answer)
		if question == "" || answer == "" || len(question) > maxSecQuestion || len(answer) > maxPassword {
			return nil, clientErr("Each security question needs a question and an answer (at most %d characters).", maxSecQuestion)
		}
		if hasHiddenRune(question) {
			return nil, errHiddenChars("A security question")
		}
		h, err := bcrypt.GenerateFromPassword([]byte(answer), db.cfg.bcryptCost)
		if err != nil {
			return nil, err
		}
		out[i] = SecQuest{Question: question, Answer: string(h)}
	}
	return out, nil
}

// normalAnswer is how security answers compare: trimmed, without regard to case.
func normalAnswer(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// lookupsFree checks that nobody has verified the user's e-mail address or phone number.
func (db *Database) lookupsFree(ctx context.Context, u *UserRecord) error {
	for kind, k := range contacts {
		v := k.value(u)
		if v == "" {
			continue
		}
		if _, err := db.quick.Get(ctx, k.key(v)); err == nil {
			return clientErr("%s", k.used)
		} else if !isNotFound(err) {
			return fmt.Errorf("checking %s: %w", kind, err)
		}
	}
	return nil
}

// releaseLookups deletes the lookup records that point at u.
func (db *Database) releaseLookups(ctx context.Context, u *UserRecord) {
	for _, key := range []Key{emailKey(u.Email), phoneKey(u.Phone)} {
		if key.Key != "" {
			db.releaseLookup(ctx, key, u.Username)
		}
	}
}

// releaseLookup deletes a lookup record if it still names user.
func (db *Database) releaseLookup(ctx context.Context, key Key, user string) {
	rec, gen, err := getRecord[LookupRecord](ctx, db.quick, key)
	if err != nil || !strings.EqualFold(rec.Username, user) {
		return
	}
	_, _ = db.quick.Delete(ctx, key, gen)
}

func validateUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	const wrong = "Invalid username or password."
	if !validUsername(req.Username) {
		return nil, clientErr(wrong)
	}
	if req.Session != "" {
		return s.resume(ctx, req)
	}
	if len(req.Password) > maxPassword {
		return nil, clientErr(wrong) // bcrypt would compare only its first 72 bytes
	}
	g, err := s.db.limits.guesses.begin(upperName(req.Username), s.remote)
	if err != nil {
		return nil, err
	}
	u, err := s.db.getUser(ctx, req.Username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		g.abort()
		return nil, err
	}
	hash := dummyHash
	if u != nil {
		hash = []byte(u.PasswordHash)
	}
	// Compare even for an unknown user, so that timing does not tell which names exist.
	right := bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) == nil && u != nil
	g.end(right)
	if !right {
		return nil, clientErr(wrong)
	}
	// A record that a crash of the quick store brought back (deleted, or from before a
	// password change) does not let anyone in (revocations.go).
	if revoked, err := s.db.revoked(ctx, u, ""); err != nil || revoked {
		return nil, cmp.Or(err, error(clientErr(wrong)))
	}
	return s.startSession(ctx, u, "")
}

// resume logs in with a resume token. Tokens are not guessable, so a valid one is never
// refused because of someone's wrong passwords.
func (s *Session) resume(ctx context.Context, req *Request) (reply, error) {
	u, hash, err := s.db.resumeSession(ctx, req.Username, req.Session)
	if errors.Is(err, ErrNotFound) {
		return nil, clientErr("Session expired or revoked; log in with your password.")
	}
	if err != nil {
		return nil, err
	}
	return s.startSession(ctx, u, hash)
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), bcrypt.DefaultCost)

// startSession logs the session in as u, issuing a resume token unless it resumed with one.
func (s *Session) startSession(ctx context.Context, u *UserRecord, resumedHash string) (reply, error) {
	token, hash := "", resumedHash
	if hash == "" {
		var err error
		if token, hash, err = s.db.newSession(ctx, u); err != nil {
			return nil, err
		}
	}
	if err := s.login(u, hash); err != nil {
		return nil, err
	}
	view, err := s.db.userView(ctx, u)
	if err != nil {
		return nil, err
	}
	view.Session = token
	return view, nil
}

func getPasswordResetUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	u, err := s.db.resetTarget(ctx, req.Username)
	if err != nil {
		return nil, err
	}
	rep := &ResetQuestions{Username: u.Username}
	for _, q := range u.SecQuests {
		rep.Questions = append(rep.Questions, q.Question)
	}
	return rep, nil
}

// resetTarget is the user whose password is to be reset, if it has security questions.
func (db *Database) resetTarget(ctx context.Context, name string) (*UserRecord, error) {
	if !validUsername(name) {
		return nil, clientErr("No such user.")
	}
	u, err := db.getUser(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, clientErr("No such user.")
	}
	if err != nil {
		return nil, err
	}
	if len(u.SecQuests) != 2 {
		return nil, clientErr("Password reset is not set up for this user.")
	}
	return u, nil
}

func resetUserPassword(ctx context.Context, s *Session, req *Request) (reply, error) {
	u, err := s.db.resetTarget(ctx, req.Username)
	if err != nil {
		return nil, err
	}
	if err := checkPassword(req.Password); err != nil {
		return nil, err
	}
	g, err := s.db.limits.guesses.begin(u.upper(), s.remote)
	if err != nil {
		return nil, err
	}
	right := answersMatch(u.SecQuests, req.SecQuests)
	g.end(right)
	if !right {
		return &ResetResult{Success: "false"}, nil
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), s.db.cfg.bcryptCost)
	if err != nil {
		return nil, err
	}
	u, err = s.db.updateUser(ctx, u.Username, func(u *UserRecord) error {
		u.PasswordHash = string(hash)
		u.SessionEpoch++ // every resume token issued before is revoked
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.db.recordSessionEpoch(ctx, u); err != nil {
		return nil, err
	}
	s.db.publishClose(u.Username, nil, "password reset", "")
	return &ResetResult{Success: "true"}, nil
}

// answersMatch checks both answers, given in the order of the questions.
func answersMatch(stored, given []SecQuest) bool {
	if len(given) != len(stored) {
		return false
	}
	ok := true
	for i := range stored {
		if bcrypt.CompareHashAndPassword([]byte(stored[i].Answer), []byte(normalAnswer(given[i].Answer))) != nil {
			ok = false
		}
	}
	return ok
}

func (r *ResetQuestions) setReply(cmd, rid string) { r.Cmd, r.Rid = cmd, rid }
func (r *ResetResult) setReply(cmd, rid string)    { r.Cmd, r.Rid = cmd, rid }
