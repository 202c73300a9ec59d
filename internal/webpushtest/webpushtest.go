// Package webpushtest is a local Web Push service (a browser vendor's push endpoint), for tests.
// It hands out subscriptions whose keys it holds, so that it can DECRYPT what an application
// server sends (RFC 8291: ECDH P-256, HKDF-SHA-256, AES-128-GCM, the aes128gcm content coding of
// RFC 8188) and check the VAPID authorization (RFC 8292: an ES256 JWT for the endpoint's origin,
// signed with the key in k=). Subscriptions marked gone answer 410, as push services do.
package webpushtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/hkdf"
)

// Push is a decrypted message the server accepted (or refused as gone).
type Push struct {
	ID        string // the subscription's id
	Plaintext []byte
	TTL       string
}

// Subscription is what a browser's PushManager.subscribe() resolves to, as JSON.
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

type sub struct {
	priv *ecdh.PrivateKey
	auth []byte
	gone bool
}

// Server is the fake push service.
type Server struct {
	*httptest.Server
	vapidKey []byte // the application server's VAPID public key (uncompressed point)

	// Received gets every decrypted push, buffered.
	Received chan Push

	mu       sync.Mutex
	subs     map[string]*sub
	hang     bool
	hanging  int
	held     int           // requests being held now
	release  chan struct{} // closed by Hang(false): the held requests are answered
	requests int
	stop     chan struct{}
	errs     []string
	seq      int
}

// New starts the service on loopback, accepting pushes signed with the VAPID key vapidPublic
// (base64url, as the application server is configured).
func New(vapidPublic string) (*Server, error) {
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(vapidPublic, "="))
	if err != nil {
		return nil, fmt.Errorf("VAPID public key: %w", err)
	}
	s := &Server{vapidKey: key, Received: make(chan Push, 100), subs: map[string]*sub{}, stop: make(chan struct{}),
		release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /push/{id}", s.push)
	s.Server = httptest.NewServer(s.hangable(mux))
	return s, nil
}

// Subscribe makes a subscription as a browser would, returning it and its id.
func (s *Server) Subscribe() (Subscription, string, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return Subscription{}, "", err
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("s%d", s.seq)
	s.subs[id] = &sub{priv: priv, auth: auth}
	s.mu.Unlock()
	var out Subscription
	out.Endpoint = s.URL + "/push/" + id
	out.Keys.P256dh = base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes())
	out.Keys.Auth = base64.RawURLEncoding.EncodeToString(auth)
	return out, id, nil
}

// JSON is the subscription as the browser's toJSON() gives it.
func (sb Subscription) JSON() string {
	b, _ := json.Marshal(sb)
	return string(b)
}

// MarkGone makes pushes to the subscription answer 410 Gone.
func (s *Server) MarkGone(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb := s.subs[id]; sb != nil {
		sb.gone = true
	}
}

// Hang makes every request wait until the client gives up, the server closes or Hang(false),
// which answers the held requests as usual.
func (s *Server) Hang(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang && !on {
		close(s.release)
		s.release = make(chan struct{})
	}
	s.hang = on
}

// Held counts the requests being held now.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Requests counts every request the server got.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Hanging counts the requests that were held without an answer.
func (s *Server) Hanging() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hanging
}

// Errors are the protocol violations the server saw.
func (s *Server) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

// Close stops the server, releasing hanging requests first.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.Server.Close()
}

func (s *Server) hangable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		hang, release := s.hang, s.release
		if hang {
			s.hanging++
			s.held++
		}
		s.mu.Unlock()
		if hang {
			released := false
			select {
			case <-r.Context().Done():
			case <-s.stop:
			case <-release:
				released = true
			}
			s.mu.Lock()
			s.held--
			s.mu.Unlock()
			if !released {
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.errs = append(s.errs, msg)
	s.mu.Unlock()
	http.Error(w, msg, code)
}

func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	sb := s.subs[id]
	s.mu.Unlock()
	if sb == nil {
		s.fail(w, 404, "no subscription %q", id)
		return
	}
	if err := s.checkVAPID(r.Header.Get("Authorization")); err != nil {
		s.fail(w, 401, "VAPID: %v", err)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		s.fail(w, 400, "Content-Encoding %q", ce)
		return
	}
	if r.Header.Get("TTL") == "" {
		s.fail(w, 400, "no TTL header")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096+200))
	if err != nil {
		s.fail(w, 413, "body: %v", err)
		return
	}
	plain, err := Decrypt(body, sb.priv, sb.auth)
	if err != nil {
		s.fail(w, 400, "decrypting: %v", err)
		return
	}
	s.Received <- Push{ID: id, Plaintext: plain, TTL: r.Header.Get("TTL")}
	s.mu.Lock()
	gone := sb.gone
	s.mu.Unlock()
	if gone {
		http.Error(w, "subscription expired", http.StatusGone)
		return
	}
	w.Header().Set("Location", s.URL+"/message/"+id)
	w.WriteHeader(http.StatusCreated)
}

// checkVAPID verifies "vapid t=<JWT>, k=<key>": k is the expected key, the JWT is ES256 by it,
// for this origin, not expired and at most 24 hours ahead, with a mailto: or https: subject.
func (s *Server) checkVAPID(h string) error {
	if !strings.HasPrefix(h, "vapid ") {
		return fmt.Errorf("scheme in %q", h)
	}
	var t, k string
	for _, p := range strings.Split(h[len("vapid "):], ",") {
		p = strings.TrimSpace(p)
		switch {
		case strings.HasPrefix(p, "t="):
			t = p[2:]
		case strings.HasPrefix(p, "k="):
			k = p[2:]
		}
	}
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k, "="))
	if err != nil || !bytes.Equal(key, s.vapidKey) {
		return errors.New("k is not the application server's key")
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), key) //nolint:staticcheck // a point, for ecdsa.Verify
	if x == nil {
		return errors.New("k is not a P-256 point")
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return errors.New("t is not a compact JWS")
	}
	var hdr, claims map[string]any
	if err := decodePart(parts[0], &hdr); err != nil || hdr["alg"] != "ES256" {
		return fmt.Errorf("JWT header %v", hdr)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return errors.New("JWT signature is not 64 bytes")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return errors.New("JWT signature does not verify")
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return err
	}
	exp, _ := claims["exp"].(float64)
	sub, _ := claims["sub"].(string)
	now := float64(time.Now().Unix())
	switch {
	case claims["aud"] != s.URL:
		return fmt.Errorf("aud %v, want %s", claims["aud"], s.URL)
	case exp < now || exp > now+24*3600:
		return fmt.Errorf("exp %v", claims["exp"])
	case !strings.HasPrefix(sub, "mailto:") && !strings.HasPrefix(sub, "https:"):
		return fmt.Errorf("sub %q", sub)
	}
	return nil
}

// Decrypt opens an aes128gcm body (RFC 8188 header, one record) for the subscription's private
// key and auth secret (RFC 8291 §3.4).
func Decrypt(body []byte, uaPriv *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("shorter than the header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 {
		return nil, fmt.Errorf("keyid length %d, want 65", idlen)
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("sender key: %w", err)
	}
	records := body[21+idlen:]
	if rs < 18 || len(records) > int(rs) {
		return nil, fmt.Errorf("record size %d for %d bytes (one record expected)", rs, len(records))
	}
	secret, err := uaPriv.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), uaPriv.PublicKey().Bytes()...), asPub.Bytes()...)
	ikm, err := hkdfBytes(secret, auth, info, 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdfBytes(ikm, salt, []byte("Content-Encoding: aes128gcm\x00"), 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdfBytes(ikm, salt, []byte("Content-Encoding: nonce\x00"), 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, records, nil)
	if err != nil {
		return nil, fmt.Errorf("AES-GCM: %w", err)
	}
	// The last record ends with 0x02 then zero padding.
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}

func hkdfBytes(secret, salt, info []byte, n int) ([]byte, error) {
	out := make([]byte, n)
	_, err := io.ReadFull(hkdf.New(sha256.New, secret, salt, info), out)
	return out, err
}

func decodePart(p string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
