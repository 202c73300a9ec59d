// Package fcmtest is a local stand-in for Firebase Cloud Messaging's HTTP v1 API and the
// Google OAuth2 token endpoint, for tests. It makes a service account (a fresh RSA key) whose
// JSON names this server as token_uri, checks the signed JWT assertion against the account's
// public key, hands out an access token, and accepts v1 sends only with that bearer token and a
// well-formed message. Tokens marked invalid answer 404 UNREGISTERED, as FCM does.
package fcmtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Message is a send the server accepted (or refused as unregistered).
type Message struct {
	Token        string
	Notification map[string]string
	Data         map[string]string
}

// Server is the fake FCM.
type Server struct {
	*httptest.Server
	ProjectID   string
	ClientEmail string
	key         *rsa.PrivateKey
	accessToken string

	// Received gets every well-formed send (also to invalid tokens), buffered.
	Received chan Message

	mu      sync.Mutex
	invalid map[string]bool
	hang    bool
	hanging int
	fails   []int // statuses to answer the next sends with, in order
	sends   int   // send requests that reached the handler
	stop    chan struct{}
	errs    []string
}

// New starts the server on loopback.
func New() (*Server, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	s := &Server{ProjectID: "pinged-test", ClientEmail: "push@pinged-test.iam.gserviceaccount.com", key: key,
		accessToken: "ya29." + randHex(16), Received: make(chan Message, 100), invalid: map[string]bool{}, stop: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.send)
	s.Server = httptest.NewServer(s.hangable(mux))
	return s, nil
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

// CredentialsJSON is a service-account key file for this server.
func (s *Server) CredentialsJSON() []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(s.key)
	b, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     s.ProjectID,
		"private_key_id": "k1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   s.ClientEmail,
		"client_id":      "1234567890",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      s.URL + "/token",
	})
	return b
}

// MarkInvalid makes sends to token answer 404 UNREGISTERED.
func (s *Server) MarkInvalid(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalid[token] = true
}

// FailNext makes the next sends answer these statuses (429 and 503 with Retry-After: 0), in order.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, statuses...)
}

// Sends counts the send requests that reached the server.
func (s *Server) Sends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends
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

func (s *Server) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.errs = append(s.errs, msg)
	s.mu.Unlock()
	if code != 0 { // 0: the answer is written already
		http.Error(w, msg, code)
	}
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

// token is Google's OAuth2 JWT-bearer grant (RFC 7523).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.fail(w, 400, "token: %v", err)
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		s.fail(w, 400, "token: grant_type %q", g)
		return
	}
	claims, err := verifyRS256(r.PostForm.Get("assertion"), &s.key.PublicKey)
	if err != nil {
		s.fail(w, 400, "token: assertion: %v", err)
		return
	}
	now := float64(time.Now().Unix())
	exp, _ := claims["exp"].(float64)
	switch {
	case claims["iss"] != s.ClientEmail:
		s.fail(w, 400, "token: iss %v", claims["iss"])
	case claims["aud"] != s.URL+"/token":
		s.fail(w, 400, "token: aud %v", claims["aud"])
	case !strings.Contains(fmt.Sprint(claims["scope"]), Scope):
		s.fail(w, 400, "token: scope %v", claims["scope"])
	case exp < now || exp > now+3700:
		s.fail(w, 400, "token: exp %v", claims["exp"])
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": s.accessToken, "token_type": "Bearer", "expires_in": 3599})
	}
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.accessToken {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`))
		s.fail(w, 0, "send: authorization %q", r.Header.Get("Authorization"))
		return
	}
	s.mu.Lock()
	s.sends++
	var failWith int
	if len(s.fails) > 0 {
		failWith, s.fails = s.fails[0], s.fails[1:]
	}
	s.mu.Unlock()
	if failWith != 0 {
		w.Header().Set("Content-Type", "application/json")
		if failWith == http.StatusTooManyRequests || failWith >= 500 {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(failWith)
		_, _ = fmt.Fprintf(w, `{"error":{"code":%d,"message":"Injected failure.","status":"%s"}}`, failWith, http.StatusText(failWith))
		return
	}
	if p := r.PathValue("project"); p != s.ProjectID {
		s.fail(w, 404, "send: project %q", p)
		return
	}
	var body struct {
		Message map[string]json.RawMessage `json:"message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Message == nil {
		s.fail(w, 400, "send: body: %v", err)
		return
	}
	var m Message
	if err := json.Unmarshal(body.Message["token"], &m.Token); err != nil || m.Token == "" {
		s.fail(w, 400, "send: no token")
		return
	}
	// v1's notification and data are string maps: a number or object there is refused.
	if err := json.Unmarshal(body.Message["notification"], &m.Notification); err != nil || m.Notification["title"] == "" {
		s.fail(w, 400, "send: notification: %v", err)
		return
	}
	if raw, ok := body.Message["data"]; ok {
		if err := json.Unmarshal(raw, &m.Data); err != nil {
			s.fail(w, 400, "send: data must map strings to strings: %v", err)
			return
		}
	}
	for k := range body.Message {
		switch k {
		case "token", "notification", "data", "android", "apns", "webpush", "fcm_options", "name":
		default:
			s.fail(w, 400, "send: unknown message field %q", k)
			return
		}
	}
	s.Received <- m
	s.mu.Lock()
	invalid := s.invalid[m.Token]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if invalid {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`))
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + s.ProjectID + "/messages/0:" + randHex(8)})
}

// verifyRS256 checks a compact JWS signed with RS256 and returns its claims.
func verifyRS256(tok string, pub *rsa.PublicKey) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	var hdr map[string]any
	if err := decodePart(parts[0], &hdr); err != nil || hdr["alg"] != "RS256" {
		return nil, fmt.Errorf("header %v (%v)", hdr, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	var claims map[string]any
	return claims, decodePart(parts[1], &claims)
}

func decodePart(p string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
