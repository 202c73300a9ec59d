package main

import (
	"crypto/rand"
	"encoding/base64"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/net/idna"
)

// Validation of everything a client names, before it reaches a query or a key.

var (
	usernameRe = regexp.MustCompile(`^[A-Za-z0-9_]{3,32}$`)
	phoneRe    = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	cidRe      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

const (
	minPassword    = 8
	maxPassword    = 72 // bcrypt uses only the first 72 bytes
	maxContent     = 8000
	maxConvoName   = 100
	maxMembers     = 100
	maxFileURL     = 2048
	maxFiles       = 200 // files listed per conversation: the record stays well under 1 MB
	maxProfilePic  = 2048
	maxClientID    = 64
	maxSecQuestion = 200
)

func validUsername(name string) bool { return usernameRe.MatchString(name) }

// validCID reports whether s is a lower-case UUID, the only form a conversation id takes.
func validCID(s string) bool { return cidRe.MatchString(s) }

// convTable is the conversation's message table; cid must be valid.
func convTable(cid string) string { return "conv_" + strings.ReplaceAll(cid, "-", "") }

func newCID() string { return uuid.NewString() }

func checkPassword(p string) error {
	switch {
	case utf8.RuneCountInString(p) < minPassword:
		return clientErr("Password must be at least %d characters.", minPassword)
	case len(p) > maxPassword:
		return clientErr("Password must be at most %d bytes.", maxPassword)
	}
	return nil
}

// normalEmail is the form in which an address is compared and stored: the domain in IDNA
// ASCII form, lower case; the local part lower-cased only where it is ASCII. Unicode case
// folding is never applied (it folds, for one, U+212A KELVIN SIGN into "k"), so no address can
// stand for another. "" stays "".
func normalEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	bad := clientErr("Invalid e-mail address.")
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || len(s) > 254 {
		return "", bad
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	domain, err = idna.Lookup.ToASCII(domain)
	if err != nil || domain == "" {
		return "", bad
	}
	if isASCII(local) {
		local = strings.ToLower(local)
	}
	return local + "@" + strings.ToLower(domain), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// normalPhone strips spaces, dashes and brackets from an E.164 number; "" stays "".
func normalPhone(s string) (string, error) {
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune(" -().", r) {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "", nil
	}
	if !phoneRe.MatchString(s) {
		return "", clientErr("Invalid phone number: use the international form, e.g. +15551234567.")
	}
	return s, nil
}

// timeLayout is every time on the wire: UTC, fixed width, microseconds, so that string order is
// time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// parseTime accepts the wire layout and, leniently, any RFC 3339 time.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(timeLayout, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, clientErr("invalid time %q: use %s", truncate(s, 40), timeLayout)
	}
	return t.UTC(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}
