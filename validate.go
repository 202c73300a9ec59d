package main

import (
	"crypto/rand"
	"encoding/base64"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
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

// Hidden characters. Names that others see (conversations, files), reactions and security
// questions must show what they say: bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE turns
// "invoice\u202Efdp.exe" into "invoiceexe.pdf" on screen, U+2066–U+2069, U+200E/F, U+061C) and
// the other invisible format characters (zero-width space U+200B, word joiner U+2060, BOM U+FEFF,
// soft hyphen U+00AD, the tags U+E0000–U+E007F …) are refused there, with C0/C1 controls. Two
// format characters are kept because scripts and emoji need them: ZERO WIDTH NON-JOINER (U+200C,
// Persian, Indic scripts) and ZERO WIDTH JOINER (U+200D, emoji sequences, Indic scripts).
// Message bodies keep them all: refusing would lose what people wrote (mixed-direction text uses
// them rightly), and the web client shows each body in an element of its own with dir="auto",
// which isolates whatever the body's controls do from the text around it (DESIGN §7).

// hiddenRune reports a control, bidirectional control or invisible format character.
func hiddenRune(r rune) bool {
	switch r {
	case '\u200c', '\u200d':
		return false
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || unicode.Is(unicode.Cf, r)
}

// hasHiddenRune reports whether s holds a hiddenRune.
func hasHiddenRune(s string) bool { return strings.ContainsFunc(s, hiddenRune) }

// errHiddenChars is the answer to a name that holds hidden characters.
func errHiddenChars(what string) error {
	return clientErr("%s may not contain control characters or invisible formatting characters (such as U+202E, which reverses text).", what)
}

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
