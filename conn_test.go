package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func TestRegisterLoginResumeLogout(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := dialRaw(t, srv)
	c.name = uniqueName("Resumer")
	created := c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword,
		"email": "  " + c.name + "@Example.org", "phone": uniquePhone(),
		"secQuests": []map[string]any{{"Question": "q1", "Answer": "a1"}, {"Question": "q2", "Answer": "a2"}}})
	token, _ := created["session"].(string)
	if len(token) < 40 || created["Email"] != strings.ToLower(c.name)+"@example.org" {
		t.Fatalf("CreateUser reply: %v", created)
	}
	for _, secret := range []string{"PasswordHash", "SecQuests", "Answer", "password"} {
		if _, has := created[secret]; has {
			t.Fatalf("user view leaks %s: %v", secret, created)
		}
	}

	// Resume with the token on a new connection, with the name in another case.
	r := dialRaw(t, srv)
	view := r.ok("ValidateUser", map[string]any{"username": strings.ToUpper(c.name), "session": token})
	if view["Username"] != c.name || view["session"] != nil {
		t.Fatalf("resume reply: %v", view)
	}
	// Commands before login are refused; after login the handshake commands are.
	fresh := dialRaw(t, srv)
	fresh.fails("CreateConversation", map[string]any{"Name": "x"}, "not logged in")
	r.fails("ValidateUser", map[string]any{"username": c.name, "password": testPassword}, "already logged in")

	// Logout revokes the token and ends every session that uses it: this one and the one it
	// was issued to.
	other := login(t, srv, c.name)
	r.ok("Logout", nil)
	c.waitFor("the token's other session to close", func() bool { return c.closed != nil })
	again := dialRaw(t, srv)
	again.fails("ValidateUser", map[string]any{"username": c.name, "session": token}, "expired or revoked")
	// A session with another token goes on; a password login still works.
	other.ok("GetUserByUsername", map[string]any{"username": c.name})
	again.ok("ValidateUser", map[string]any{"username": c.name, "password": testPassword})
}

// Resume tokens per user are capped: the oldest is revoked, and its session closed.
func TestSessionsPerUserAreCapped(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxSessionsPerUser = 2
	srv := startServer(t, cfg)
	first := dialRaw(t, srv)
	first.name = uniqueName("many")
	token := first.ok("CreateUser", map[string]any{"username": first.name, "password": testPassword})["session"]
	login(t, srv, first.name)
	latest := login(t, srv, first.name)
	first.waitFor("the oldest login to be revoked", func() bool { return first.closed != nil })
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": first.name, "session": token}, "expired or revoked")
	latest.ok("GetUserByUsername", map[string]any{"username": first.name})
	u, err := srv.db.getUser(t.Context(), first.name)
	if err != nil || len(u.Tokens) != 2 {
		t.Fatalf("stored tokens: %v %v", u, err)
	}
}

// uniquePhone makes an E.164 number no other test uses.
func uniquePhone() string {
	return fmt.Sprintf("+1 555 %03d %04d", os.Getpid()%1000, userSeq.Add(1)%10000)
}

// CheckUsername answers before login whether a name is free, for the registration form.
func TestCheckUsername(t *testing.T) {
	srv := startServer(t, testConfig(t))
	taken := register(t, srv, "taken")
	c := dialRaw(t, srv)
	if rep := c.ok("CheckUsername", map[string]any{"username": strings.ToUpper(taken.name)}); rep["Available"] != false {
		t.Fatalf("a taken name (other case): %v", rep)
	}
	if rep := c.ok("CheckUsername", map[string]any{"username": uniqueName("free")}); rep["Available"] != true {
		t.Fatalf("a free name: %v", rep)
	}
	c.fails("CheckUsername", map[string]any{"username": "a b"}, "Invalid username")
}

func TestLoginErrors(t *testing.T) {
	srv := startServer(t, testConfig(t))
	owner := register(t, srv, "Taken")
	c := dialRaw(t, srv)
	c.fails("CreateUser", map[string]any{"username": strings.ToLower(owner.name), "password": testPassword}, "Username already taken.")
	c.fails("CreateUser", map[string]any{"username": strings.ToUpper(owner.name), "password": testPassword}, "Username already taken.")
	for _, bad := range []string{"ab", "has space", "semi;colon", "robert'); DROP TABLE quickstore;--", strings.Repeat("x", 33), "ünï"} {
		c.fails("CreateUser", map[string]any{"username": bad, "password": testPassword}, "Invalid username")
	}
	c.fails("CreateUser", map[string]any{"username": uniqueName("weak"), "password": "short"}, "at least 8")
	c.fails("CreateUser", map[string]any{"username": uniqueName("weak"), "password": strings.Repeat("p", 73)}, "at most 72")
	c.fails("CreateUser", map[string]any{"username": uniqueName("mail"), "password": testPassword, "email": "not-an-address"}, "Invalid e-mail")
	c.fails("CreateUser", map[string]any{"username": uniqueName("tel"), "password": testPassword, "phone": "12345"}, "Invalid phone")
	c.fails("CreateUser", map[string]any{"username": uniqueName("sq"), "password": testPassword,
		"secQuests": []map[string]any{{"Question": "only one", "Answer": "a"}}}, "two security questions")

	c.fails("ValidateUser", map[string]any{"username": owner.name, "password": "wrong password"}, "Invalid username or password.")
	c.fails("ValidateUser", map[string]any{"username": uniqueName("nobody"), "password": testPassword}, "Invalid username or password.")
	c.fails("ValidateUser", map[string]any{"username": owner.name, "session": "forged"}, "expired or revoked")
}

func TestBadFramesAnswerErrorsAndKeepTheConnection(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "frames")
	cases := []struct{ frame, cmd, want string }{
		{`not json`, "", "malformed frame"},
		{`[1,2,3]`, "", "malformed frame"},
		{`"a string"`, "", "malformed frame"},
		{`{}`, "", "missing cmd"},
		{`{"rid":"x"}`, "", "missing cmd"},
		{`{"cmd":"SendMessage","CID":5}`, "SendMessage", "invalid request"},
		{`{"cmd":"` + strings.Repeat("y", 10) + `","rid":"` + strings.Repeat("r", 65) + `"}`, strings.Repeat("y", 10), "rid longer"},
		{`{"cmd":"x","pad":"` + strings.Repeat("z", frameLimit) + `"}`, "", "frame too large"},
	}
	for _, tc := range cases {
		before := len(c.raw)
		c.sendRaw(tc.frame)
		c.waitFor("reply to "+truncate(tc.frame, 30), func() bool { return len(c.raw) > before })
		c.mu.Lock()
		var got map[string]any
		_ = json.Unmarshal([]byte(c.raw[len(c.raw)-1]), &got)
		c.mu.Unlock()
		if got["cmd"] != tc.cmd || !strings.Contains(got["error"].(string), tc.want) {
			t.Errorf("frame %q: got %v, want cmd %q and error containing %q", truncate(tc.frame, 40), got, tc.cmd, tc.want)
		}
	}
	unknown := c.call("NoSuchCommand", nil)
	if unknown["retcmd"] != "bad_command" || unknown["cmd"] != "NoSuchCommand" || unknown["error"] != "unknown command" {
		t.Fatalf("unknown command reply: %v", unknown)
	}
	// The connection still works.
	c.ok("CreateConversation", map[string]any{"Name": "still here"})
}

func TestFloodingIsRateLimitedThenClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandRate, cfg.CommandBurst = 1, 5
	srv := startServer(t, cfg)
	c := register(t, srv, "flood")
	var limited map[string]any
	for i := 0; limited == nil; i++ {
		rep := c.call("UpdateConvoMtime", map[string]any{"CID": "x"})
		if rep["error"] == "rate limited" {
			limited = rep
		}
		if i > 10 {
			t.Fatal("no rate limit after 10 rapid commands at a burst of 5")
		}
	}
	// Keep flooding without waiting for replies: the server closes the session.
	for range floodLimit + 10 {
		if err := c.conn.write(`{"cmd":"UpdateConvoMtime"}`); err != nil {
			break
		}
	}
	c.waitFor("the server to close a flooding session", func() bool { return c.closed != nil })
}

func TestSockJSFramedTransport(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := dialSockJS(t, srv)
	a.name = uniqueName("framed")
	a.ok("CreateUser", map[string]any{"username": a.name, "password": testPassword})
	b := register(t, srv, "rawpeer")
	cid := newConvo(t, a, "over sockjs", b)
	b.ok("SendMessage", map[string]any{"CID": cid, "content": `quotes " and \ backslashes and "a[" frames`})
	p := a.waitPush("message over SockJS framing", isMsgIn(cid))
	if p["content"] != `quotes " and \ backslashes and "a[" frames` {
		t.Fatalf("content mangled: %q", p["content"])
	}
	a.ok("SendMessage", map[string]any{"CID": cid, "content": "back over sockjs"})
	b.waitPush("reply from the SockJS client", func(p map[string]any) bool { return p["content"] == "back over sockjs" })
}

func TestHugeWebsocketFrameClosesTheConnection(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "huge")
	// Just under the hard limit: answered with an error, the connection stays.
	before := len(c.raw)
	c.sendRaw(`{"cmd":"SendMessage","content":"` + strings.Repeat("a", hardFrameLimit-100) + `"}`)
	c.waitFor("the error reply", func() bool { return len(c.raw) > before })
	if got := c.raw[before]; !strings.Contains(got, "frame too large") {
		t.Fatalf("reply to a 1 MiB frame: %s", got)
	}
	// Over it: the connection is closed before the payload is read.
	_ = c.conn.write(`{"cmd":"SendMessage","content":"` + strings.Repeat("b", 2*hardFrameLimit) + `"}`)
	c.waitFor("the connection to close", func() bool { return c.closed != nil })
	// The server is fine.
	register(t, srv, "after")
}

func TestWebsocketOriginCheck(t *testing.T) {
	cfg := testConfig(t)
	cfg.AllowedOrigins = "https://chat.example.org"
	srv := startServer(t, cfg)
	dial := func(origin string) error {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", h)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, ok := range []string{"", "http://" + srv.addr, "https://chat.example.org"} {
		if err := dial(ok); err != nil {
			t.Errorf("origin %q refused: %v", ok, err)
		}
	}
	if err := dial("https://evil.example"); err == nil {
		t.Error("a foreign origin opened a websocket")
	}
}
