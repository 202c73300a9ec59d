// Package apnstest is a local stand-in for the Apple Push Notification service, for tests: an
// HTTP/2-over-TLS server that checks the provider token (an ES256 JWT signed with the .p8 key it
// made), the apns-topic and push-type headers and the payload, and answers 410 Unregistered for
// device tokens marked invalid, as APNs does.
package apnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Notification is a push the server accepted (or refused as unregistered).
type Notification struct {
	Token   string
	Topic   string
	Payload map[string]any
}

// Server is the fake APNs.
type Server struct {
	*httptest.Server
	KeyID, TeamID, Topic string
	key                  *ecdsa.PrivateKey

	// Received gets every well-formed push, buffered.
	Received chan Notification

	mu      sync.Mutex
	invalid map[string]bool
	hang    bool
	hanging int
	stop    chan struct{}
	errs    []string
}

// New starts the server (HTTP/2, TLS with a self-signed certificate) on loopback.
func New(topic string) (*Server, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &Server{KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ", Topic: topic, key: key,
		Received: make(chan Notification, 100), invalid: map[string]bool{}, stop: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /3/device/{token}", s.push)
	s.Server = httptest.NewUnstartedServer(s.hangable(mux))
	s.EnableHTTP2 = true
	s.StartTLS()
	return s, nil
}

// KeyP8 is the token-signing key as Apple hands it out (PKCS #8 PEM).
func (s *Server) KeyP8() []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(s.key)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Roots trusts the server's certificate.
func (s *Server) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
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

// MarkInvalid makes pushes to token answer 410 Unregistered.
func (s *Server) MarkInvalid(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalid[token] = true
}

// Hang makes every request wait until the client gives up or the server closes.
func (s *Server) Hang(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = on
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

func (s *Server) hangable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hang := s.hang
		if hang {
			s.hanging++
		}
		s.mu.Unlock()
		if hang {
			select {
			case <-r.Context().Done():
			case <-s.stop:
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) reason(w http.ResponseWriter, code int, reason string, format string, args ...any) {
	if format != "" {
		s.mu.Lock()
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	body := map[string]any{"reason": reason}
	if code == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		s.reason(w, 400, "BadRequest", "push over %s, not HTTP/2", r.Proto)
		return
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(strings.ToLower(auth), "bearer ") {
		s.reason(w, 403, "MissingProviderToken", "no provider token")
		return
	}
	if err := s.checkToken(auth[len("bearer "):]); err != nil {
		s.reason(w, 403, "InvalidProviderToken", "provider token: %v", err)
		return
	}
	if t := r.Header.Get("apns-topic"); t != s.Topic {
		s.reason(w, 400, "BadTopic", "topic %q", t)
		return
	}
	if pt := r.Header.Get("apns-push-type"); pt != "alert" {
		s.reason(w, 400, "InvalidPushType", "push type %q", pt)
		return
	}
	var n Notification
	n.Token, n.Topic = r.PathValue("token"), r.Header.Get("apns-topic")
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&n.Payload); err != nil {
		s.reason(w, 400, "PayloadEmpty", "payload: %v", err)
		return
	}
	aps, _ := n.Payload["aps"].(map[string]any)
	alert, _ := aps["alert"].(map[string]any)
	if alert == nil || alert["title"] == nil {
		s.reason(w, 400, "BadRequest", "payload without aps.alert.title: %v", n.Payload)
		return
	}
	s.Received <- n
	s.mu.Lock()
	invalid := s.invalid[n.Token]
	s.mu.Unlock()
	if invalid {
		s.reason(w, http.StatusGone, "Unregistered", "")
		return
	}
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
	w.WriteHeader(http.StatusOK)
}

// checkToken verifies the provider token: ES256 with our key, our key id and team, recent.
func (s *Server) checkToken(tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("not a compact JWS")
	}
	var hdr, claims map[string]any
	if err := decodePart(parts[0], &hdr); err != nil {
		return err
	}
	if hdr["alg"] != "ES256" || hdr["kid"] != s.KeyID {
		return fmt.Errorf("header %v", hdr)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return errors.New("signature is not 64 bytes of base64url")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&s.key.PublicKey, sum[:], r, ss) {
		return errors.New("bad signature")
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return err
	}
	iat, _ := claims["iat"].(float64)
	if claims["iss"] != s.TeamID || time.Since(time.Unix(int64(iat), 0)) > time.Hour {
		return fmt.Errorf("claims %v", claims)
	}
	return nil
}

func decodePart(p string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
