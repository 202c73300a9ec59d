package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pingedchat/internal/bottest"
)

func TestParseBotCommand(t *testing.T) {
	for _, tc := range []struct{ in, bot, query string }{
		{"@giphy funny cat", "giphy", "funny cat"},
		{"@GIPHY  dog ", "giphy", "dog"},
		{"@forecast Berlin", "forecast", "Berlin"},
		{"@giphy", "", ""},
		{"@giphy   ", "", ""},
		{"hey @giphy cat", "", ""},
		{"@giphycat", "", ""},
		{"@forecast " + strings.Repeat("x", maxBotQuery+1), "", ""},
	} {
		bot, q, ok := parseBotCommand(tc.in)
		if bot != tc.bot || q != tc.query || ok != (tc.bot != "") {
			t.Errorf("%q: got %q %q %v", tc.in, bot, q, ok)
		}
	}
}

// startBotServices runs the fake Giphy and Open-Meteo and points cfg at them.
func startBotServices(t *testing.T, cfg *Config) *bottest.Server {
	t.Helper()
	svc := bottest.New("testdata/bots", "test-giphy-key")
	t.Cleanup(svc.Close)
	t.Cleanup(func() {
		for _, e := range svc.Errors() {
			t.Errorf("bot service saw: %s", e)
		}
	})
	cfg.GiphyKey, cfg.GiphyURL, cfg.GeocodingURL, cfg.ForecastURL = svc.APIKey, svc.URL, svc.URL, svc.URL
	return svc
}

// botAnswer waits for c's next bot message in cid after the user's own message with content,
// which must come first, as sent.
func botAnswer(t *testing.T, c *client, cid, content string) (map[string]any, BotAnswer) {
	t.Helper()
	p := c.waitPush("the user's message", isMsgIn(cid))
	if p["content"] != content || p["kind"] != "text" {
		t.Fatalf("%s: first message %v, want %q as sent", c.name, p, content)
	}
	p = c.waitPush("bot answer", isMsgIn(cid))
	if p["kind"] != "bot" {
		t.Fatalf("%s: after %q got %v, want the bot's answer", c.name, content, p)
	}
	var ans BotAnswer
	if err := json.Unmarshal([]byte(p["content"].(string)), &ans); err != nil {
		t.Fatalf("bot content is not JSON: %v", p["content"])
	}
	return p, ans
}

// TestBotsAnswerAfterTheMessage: @giphy and @forecast are answered, after the user's message,
// by a stored message of kind bot whose content is the structured answer.
func TestBotsAnswerAfterTheMessage(t *testing.T) {
	cfg := testConfig(t)
	svc := startBotServices(t, &cfg)
	srv := startServer(t, cfg)
	alice := register(t, srv, "ba")
	bob := register(t, srv, "bb")
	cid := newConvo(t, alice, "bots", bob)

	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "@giphy funny cat"})
	p, gif := botAnswer(t, bob, cid, "@giphy funny cat")
	if p["f_username"] != "@giphy" || gif.Type != "gif" || gif.Bot != "giphy" || gif.Query != "funny cat" ||
		!strings.HasPrefix(gif.URL, svc.MediaBase+"/JIX9t2j0ZTN9S/200.gif") || gif.Width != 200 || gif.Height != 200 ||
		gif.Attribution != "Powered by GIPHY" || gif.Text != "Cat Typing GIF" ||
		gif.Link != "https://giphy.com/gifs/cat-funny-JIX9t2j0ZTN9S" {
		t.Fatalf("giphy answer %v: %+v", p, gif)
	}

	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "@forecast Berlin"})
	p, fc := botAnswer(t, bob, cid, "@forecast Berlin")
	wantDays := []ForecastDay{
		{Date: "2026-11-27", Min: 3.2, Max: 8.9, Code: 61, Summary: "light rain"},
		{Date: "2026-11-28", Min: 1, Max: 6.1, Code: 3, Summary: "overcast"},
		{Date: "2026-11-29", Min: -1.4, Max: 2.3, Code: 71, Summary: "snow"},
	}
	if p["f_username"] != "@forecast" || fc.Type != "forecast" || fc.Place != "Berlin, Land Berlin, Germany" ||
		!slices.Equal(fc.Days, wantDays) || fc.Attribution == "" ||
		fc.Text != "Berlin, Land Berlin, Germany: today 3.2–8.9 °C, light rain; tomorrow 1–6.1 °C, overcast; 2026-11-29 -1.4–2.3 °C, snow" {
		t.Fatalf("forecast answer %+v", fc)
	}

	for _, tc := range []struct{ content, text string }{
		{"@forecast Atlantis", `No place called "Atlantis" found.`},
		{"@giphy nothing", `No GIF found for "nothing".`},
	} {
		alice.ok("SendMessage", map[string]any{"CID": cid, "content": tc.content})
		if _, ans := botAnswer(t, bob, cid, tc.content); ans.Type != "error" || ans.Text != tc.text {
			t.Fatalf("%s: %+v", tc.content, ans)
		}
	}

	// The answers are stored: history has each right after the message that asked.
	rep := alice.ok("GetConvoData", map[string]any{"CID": cid})
	var kinds []string
	for _, m := range rep["Messages"].([]any) {
		kinds = append(kinds, m.(map[string]any)["kind"].(string))
	}
	if !slices.Equal(kinds, []string{"text", "bot", "text", "bot", "text", "bot", "text", "bot"}) {
		t.Fatalf("history kinds %v", kinds)
	}
}

// TestBotsFailSoftly: an unconfigured Giphy and a service that does not answer give answers that
// say so, and the user's acknowledgement never waits for a bot.
func TestBotsFailSoftly(t *testing.T) {
	cfg := testConfig(t)
	svc := startBotServices(t, &cfg)
	cfg.GiphyKey = "FILL_ME"
	cfg.botTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg)
	alice := register(t, srv, "bf")
	cid := newConvo(t, alice, "bots")

	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "@giphy cat"})
	if _, ans := botAnswer(t, alice, cid, "@giphy cat"); ans.Type != "error" || ans.Text != "GIPHY is not configured on this server." {
		t.Fatalf("unconfigured giphy: %+v", ans)
	}

	// A failing service: the answer says so, and the log names no API key.
	logs := captureLogs(t)
	cfg2 := testConfig(t)
	cfg2.GiphyKey, cfg2.GiphyURL = "secret-key-1", "http://127.0.0.1:1" // nothing listens there
	carol := register(t, startServer(t, cfg2), "bc")
	cid2 := newConvo(t, carol, "failing")
	carol.ok("SendMessage", map[string]any{"CID": cid2, "content": "@giphy dog"})
	if _, ans := botAnswer(t, carol, cid2, "@giphy dog"); ans.Type != "error" || ans.Text != "The GIPHY service failed; try again later." {
		t.Fatalf("failing giphy: %+v", ans)
	}
	if !strings.Contains(logs.String(), "bot failed") || strings.Contains(logs.String(), "secret-key-1") {
		t.Fatalf("log: %s", logs.String())
	}

	svc.Hang(true)
	rep := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "@forecast Berlin", "client_id": "hang-1"})
	_, ans := botAnswer(t, alice, cid, "@forecast Berlin")
	if ans.Type != "error" || ans.Text != "The forecast service did not answer in time." {
		t.Fatalf("hanging forecast: %+v", ans)
	}
	// The acknowledgement came before the bot's answer reached the client.
	alice.mu.Lock()
	ackAt, botAt := -1, -1
	for i, raw := range alice.raw {
		if strings.Contains(raw, `"rid"`) && strings.Contains(raw, `"client_id":"hang-1"`) {
			ackAt = i
		}
		if strings.Contains(raw, `\"bot\":\"forecast\"`) {
			botAt = i
		}
	}
	alice.mu.Unlock()
	if ackAt < 0 || botAt < 0 || ackAt > botAt {
		t.Fatalf("ack at %d, bot answer at %d (ack %v)", ackAt, botAt, rep)
	}
}

// TestBotsSharePerUser: one user has at most botsPerUser requests in flight; the next is answered
// at once that it must wait, and another user's request still gets a slot.
func TestBotsSharePerUser(t *testing.T) {
	cfg := testConfig(t)
	svc := startBotServices(t, &cfg)
	cfg.botTimeout = time.Minute // the hanging service holds the slots until it closes
	srv := startServer(t, cfg)
	alice := register(t, srv, "bsa")
	bob := register(t, srv, "bsb")
	cid := newConvo(t, alice, "bots", bob)

	svc.Hang(true)
	for i := range botsPerUser + 1 {
		alice.ok("SendMessage", map[string]any{"CID": cid, "content": fmt.Sprintf("@forecast town%d", i)})
	}
	busy := bob.waitPush("an answer that alice must wait", func(p map[string]any) bool {
		return p["kind"] == "bot" && strings.Contains(fmt.Sprint(p["content"]), "bot requests running")
	})
	var ans BotAnswer
	if err := json.Unmarshal([]byte(busy["content"].(string)), &ans); err != nil || ans.Type != "error" ||
		ans.Text != fmt.Sprintf("You have %d bot requests running; try again when they have answered.", botsPerUser) {
		t.Fatalf("busy answer %+v (%v)", ans, err)
	}
	waitUntil(t, "alice's requests at the service", func() bool { return svc.Hanging() == botsPerUser })
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "@forecast Paris"})
	waitUntil(t, "bob's request at the service", func() bool { return svc.Hanging() == botsPerUser+1 })

	svc.Close() // the held requests fail: every one is answered, and alice's share is free again
	answered := 0
	bob.waitFor("the held requests' answers", func() bool {
		for _, p := range bob.pushes {
			if p["kind"] == "bot" && strings.Contains(fmt.Sprint(p["content"]), "forecast service") {
				answered++
			}
		}
		done := answered == botsPerUser+1
		answered = 0
		return done
	})
}
