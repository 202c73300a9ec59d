package main

// Browser tests of the web client's account screens: settings (profile picture, automatic
// reply, e-mail and phone with their verification codes, password, blocked people, deleting the
// account), forgot password, and registering without security questions. One server with a
// local SMTP relay (internal/smtptest) and one browser; the helpers are web_test.go's.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// textIs is an expression: the text of the first element matching sel is exactly want.
func textIs(sel, want string) string {
	return fmt.Sprintf(`(document.querySelector(%s) || {}).textContent === %s`, js(sel), js(want))
}

// click clicks the element matching a CSS selector, as a mouse does.
func (p *page) click(t testing.TB, sel string) {
	t.Helper()
	p.do(t, chromedp.Click(chromedp.CSS(sel)))
}

// pressKey sends one key (keydown and keyup), e.g. Backspace.
func (p *page) pressKey(t testing.TB, key string, vk int64) {
	t.Helper()
	p.do(t, chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			if _, err := cdp.Call(ctx, tgt, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: key, Code: key, WindowsVirtualKeyCode: vk, NativeVirtualKeyCode: vk,
			}); err != nil {
				return err
			}
		}
		return nil
	}))
}

// replaceText selects what a field holds and types text over it ("" empties it), as a user
// selecting all and typing does.
func (p *page) replaceText(t testing.TB, sel, text string) {
	t.Helper()
	p.do(t, chromedp.Focus(chromedp.CSS(sel)))
	p.eval(t, fmt.Sprintf(`document.querySelector(%s).select()`, js(sel)), nil)
	if text == "" {
		p.pressKey(t, "Backspace", 8)
		return
	}
	p.typeInto(t, sel, text)
}

// logIn logs in through the login form.
func (p *page) logIn(t testing.TB, name, password string) {
	t.Helper()
	p.do(t, chromedp.Navigate(p.base+"/"))
	p.waitVisible(t, "#login-form")
	p.typeInto(t, "#login-username", name)
	p.typeInto(t, "#login-password", password)
	p.click(t, "#login-form button[type=submit]")
	p.name = name
	p.waitJS(t, "logged in", `!document.getElementById('chat-view').hidden && document.body.dataset.conn === 'online'`)
}

// openSettings opens the settings dialog from the sidebar.
func (p *page) openSettings(t testing.TB) {
	t.Helper()
	p.click(t, "#settings-btn")
	p.waitVisible(t, "#settings-dialog")
}

// mailCode waits for mail n (from 1) at the relay, checks where it went, and returns its code.
func TestWebSettings(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	srv := startServer(t, cfg)
	base := "http://" + srv.addr

	alice := newPage(t, browser, base, 1280, 800) // desktop
	alice2 := newPage(t, browser, base, 390, 844) // alice's phone
	bob := newPage(t, browser, base, 390, 844)
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")
	alicePassword := testPassword

	if !t.Run("settings screen", func(t *testing.T) {
		alice.register(t, aliceName)
		bob.register(t, bobName)
		alice2.logIn(t, aliceName, testPassword)
		alice.openSettings(t)
		alice.waitJS(t, "nothing set yet", textIs("#auto-state", "Off")+` && document.getElementById('email-verify').hidden && `+
			`!document.getElementById('blocked-empty').hidden && document.getElementById('settings-note').hidden`)
		alice.screenshot(t, "settings.png")
		alice2.openSettings(t)
		alice2.screenshot(t, "settings-phone.png")
	}) {
		return
	}

	if !t.Run("profile picture", func(t *testing.T) {
		pic := writeFile(t, t.TempDir(), "me.png", testPNG(t, 64, 64))
		alice.setFiles(t, "#pic-file", pic)
		alice.waitJS(t, "saved", textIs("#pic-form .form-ok", "Profile picture saved.")+` && `+textIs("#pic-form .form-error", ""))
		// The server pushes the new view to alice's other sessions; the open dialog follows.
		alice2.waitJS(t, "the picture on alice's phone", `!!document.querySelector('#pic-preview img.avatar-pic')`)
	}) {
		return
	}

	if !t.Run("automatic reply", func(t *testing.T) {
		away := "Away until Monday, back on the 3rd."
		alice.typeInto(t, "#auto-text", away)
		alice.click(t, "#auto-form button[type=submit]")
		alice.waitJS(t, "on", textIs("#auto-form .form-ok", "Automatic reply on.")+` && `+textIs("#auto-state", "On"))
		alice2.waitJS(t, "on, on alice's phone", textIs("#auto-state", "On"))

		// bob writes to alice: the server answers with her automatic reply, marked as one.
		bobGo := login(t, srv, bobName)
		rep := bobGo.ok("CreateConversation", map[string]any{"Name": "", "Members": []string{aliceName}})
		cid, _ := rep["CID"].(string)
		bobGo.ok("SendMessage", map[string]any{"CID": cid, "content": "Are you around on Saturday?", "client_id": "sat-1"})
		bob.openConvo(t, aliceName)
		autoMsg := fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].find((li) => li.querySelector('.text').textContent === %s)`, js(away))
		bob.waitJS(t, "alice's automatic reply, marked", autoMsg+` && `+autoMsg+`.classList.contains('auto') && `+
			autoMsg+`.querySelector('.auto-label').textContent === 'Automatic reply'`)
		var plain int
		bob.eval(t, `document.querySelectorAll('#messages .msg:not(.auto) .auto-label').length`, &plain)
		if plain != 0 {
			t.Errorf("%d ordinary messages are marked as automatic replies", plain)
		}
		bob.screenshot(t, "autoreply-phone.png")

		alice.replaceText(t, "#auto-text", "")
		alice.click(t, "#auto-form button[type=submit]")
		alice.waitJS(t, "off", textIs("#auto-form .form-ok", "Automatic reply off.")+` && `+textIs("#auto-state", "Off"))
		if v := login(t, srv, aliceName).ok("GetUserView", nil); v["AutoreplyMessage"] != "" {
			t.Errorf("the automatic reply is still %q on the server", v["AutoreplyMessage"])
		}
	}) {
		return
	}

	if !t.Run("e-mail verification", func(t *testing.T) {
		email := strings.ToLower(aliceName) + "@example.org"
		alice.typeInto(t, "#email-input", email)
		alice.click(t, "#email-form button[type=submit]")
		alice.waitJS(t, "saved, unverified", textIs("#email-state", "Not verified")+` && !document.getElementById('email-verify').hidden`)
		alice2.waitJS(t, "unverified on alice's phone", textIs("#email-state", "Not verified"))
		alice.click(t, "#email-verify [data-send]")
		alice.waitJS(t, "the code sent", textIs("#email-verify .form-ok", "Code sent to "+email+". It is valid for 15 minutes."))
		code := receivedCode(t, relay, 1, email)
		alice.screenshot(t, "settings-verify.png")

		wrong := "000000"
		if code == wrong {
			wrong = "000001"
		}
		alice.typeInto(t, "#email-code", wrong)
		alice.click(t, "#email-verify button[type=submit]")
		alice.waitJS(t, "a wrong code refused", textIs("#email-verify .form-error", "Couldn't verify the code: Wrong code."))
		alice.replaceText(t, "#email-code", code)
		alice.click(t, "#email-verify button[type=submit]")
		alice.waitJS(t, "verified", textIs("#email-state", "Verified")+` && document.getElementById('email-verify').hidden && `+
			textIs("#email-form .form-ok", "E-mail address verified."))
		alice2.waitJS(t, "verified on alice's phone", textIs("#email-state", "Verified"))
	}) {
		return
	}

	if !t.Run("phone verification", func(t *testing.T) {
		alice.typeInto(t, "#phone-input", "+1 (555) 010-7788")
		alice.click(t, "#phone-form button[type=submit]")
		// The server keeps the number in its international form, and the field shows that.
		alice.waitJS(t, "saved, unverified", textIs("#phone-state", "Not verified")+
			` && document.getElementById('phone-input').value === '+15550107788'`)
		alice.click(t, "#phone-verify [data-send]")
		alice.waitJS(t, "a carrier asked for", textIs("#phone-verify .form-error", "Pick your carrier: the code is sent as a text message through it."))
		alice.do(t, chromedp.SetValue(chromedp.CSS("#phone-carrier"), "tmobile"))
		alice.click(t, "#phone-verify [data-send]")
		alice.waitJS(t, "the code sent", textIs("#phone-verify .form-ok", "Code sent to +15550107788. It is valid for 15 minutes."))
		code := receivedCode(t, relay, 2, "5550107788@tmomail.net")
		alice.typeInto(t, "#phone-code", code)
		alice.click(t, "#phone-verify button[type=submit]")
		alice.waitJS(t, "verified", textIs("#phone-state", "Verified")+` && document.getElementById('phone-verify').hidden`)
		v := login(t, srv, aliceName).ok("GetUserView", nil)
		if v["PhoneVerified"] != true || v["EmailVerified"] != true || v["Phone"] != "+15550107788" {
			t.Errorf("the server's view: phone %v verified %v, e-mail verified %v", v["Phone"], v["PhoneVerified"], v["EmailVerified"])
		}
	}) {
		return
	}

	if !t.Run("blocked people", func(t *testing.T) {
		carol := register(t, srv, "carol")
		alice.typeInto(t, "#block-input", "nobody_"+aliceName)
		alice.click(t, "#block-form button[type=submit]")
		alice.waitJS(t, "an unknown name refused", textIs("#block-form .form-error", "Couldn't block that user: No such user."))
		alice.replaceText(t, "#block-input", carol.name)
		alice.click(t, "#block-form button[type=submit]")
		alice.waitJS(t, "carol blocked", textIs("#block-form .form-ok", carol.name+" is blocked.")+` && `+
			textIs("#blocked-list .member-name", carol.name)+` && document.getElementById('blocked-empty').hidden`)
		alice2.waitJS(t, "carol blocked on alice's phone", textIs("#blocked-list .member-name", carol.name))
		carol.fails("CreateConversation", map[string]any{"Name": "", "Members": []string{aliceName}}, "cannot be added to more conversations")

		alice.click(t, fmt.Sprintf(`#blocked-list button[aria-label=%s]`, js("Unblock "+carol.name)))
		alice.waitJS(t, "carol unblocked", textIs("#block-form .form-ok", carol.name+" is unblocked.")+
			` && document.querySelectorAll('#blocked-list li').length === 0 && !document.getElementById('blocked-empty').hidden`)
		carol.ok("CreateConversation", map[string]any{"Name": "", "Members": []string{aliceName}})
	}) {
		return
	}

	if !t.Run("password change keeps this device logged in", func(t *testing.T) {
		var before string
		alice.eval(t, `JSON.parse(localStorage.getItem('pingedchat.auth')).session`, &before)
		newPassword := "a new and longer passphrase"
		alice.typeInto(t, "#pw-old", "not my password")
		alice.typeInto(t, "#pw-new", newPassword)
		alice.click(t, "#password-form button[type=submit]")
		alice.waitJS(t, "a wrong password refused", textIs("#password-form .form-error", "Couldn't change your password: Wrong password."))
		alice.replaceText(t, "#pw-old", alicePassword)
		alice.click(t, "#password-form button[type=submit]")
		alice.waitJS(t, "changed", textIs("#password-form .form-ok", "Password changed. Your other devices were logged out.")+
			` && document.getElementById('pw-old').value === '' && document.getElementById('pw-new').value === ''`)
		alicePassword = newPassword

		// alice's phone was logged out by the change, and says why.
		alice2.waitJS(t, "alice's phone logged out", `!document.getElementById('auth-view').hidden && `+
			textIs("#login-form .form-error", "You were logged out: password changed."))
		alice2.screenshot(t, "password-changed-phone.png")

		// This device keeps the new session the server issued: a reload resumes with it.
		var after string
		alice.eval(t, `JSON.parse(localStorage.getItem('pingedchat.auth')).session`, &after)
		if after == "" || after == before {
			t.Fatalf("the stored session token did not change with the password (before %q, after %q)", before, after)
		}
		alice.do(t, chromedp.Reload())
		alice.waitJS(t, "still logged in after a reload", `!document.getElementById('chat-view').hidden && document.body.dataset.conn === 'online'`)
		c := dialRaw(t, srv)
		c.fails("ValidateUser", map[string]any{"username": aliceName, "session": before}, "Session expired")
		c.ok("ValidateUser", map[string]any{"username": aliceName, "password": newPassword})
	}) {
		return
	}

	if !t.Run("delete account", func(t *testing.T) {
		alice.openSettings(t)
		alice.click(t, "#delete-btn")
		alice.waitVisible(t, "#delete-dialog")
		alice.typeInto(t, "#delete-password", "not my password")
		alice.click(t, "#delete-form button[type=submit]")
		alice.waitJS(t, "a wrong password refused", textIs("#delete-form .form-error", "Couldn't delete your account: Wrong password."))
		alice.screenshot(t, "delete.png")
		alice.replaceText(t, "#delete-password", alicePassword)
		alice.click(t, "#delete-form button[type=submit]")
		alice.waitJS(t, "the login form after deletion", `!document.getElementById('auth-view').hidden && `+
			textIs("#login-form .form-error", "Your account was deleted.")+` && localStorage.getItem('pingedchat.auth') === null`)
		c := dialRaw(t, srv)
		c.fails("ValidateUser", map[string]any{"username": aliceName, "password": alicePassword}, "Invalid username or password")
	}) {
		return
	}

	t.Run("security questions are optional; forgot password", func(t *testing.T) {
		guest := newPage(t, browser, base, 390, 844)
		plain := uniqueName("plain")
		guest.do(t, chromedp.Navigate(base+"/"))
		guest.waitVisible(t, "#auth-view")
		guest.click(t, "#tab-register")
		guest.waitVisible(t, "#register-form")
		guest.typeInto(t, "#reg-username", plain)
		guest.typeInto(t, "#reg-password", testPassword)
		guest.typeInto(t, "#reg-a1", "Rex")
		guest.click(t, "#register-form button[type=submit]")
		guest.waitJS(t, "one answer alone refused", textIs("#register-form .form-error", "Answer both security questions, or leave both empty."))
		guest.screenshot(t, "register-phone.png")
		guest.replaceText(t, "#reg-a1", "")
		guest.click(t, "#register-form button[type=submit]")
		guest.name = plain
		guest.waitJS(t, "registered without questions", `!document.getElementById('chat-view').hidden && document.body.dataset.conn === 'online'`)
		guest.eval(t, `window.beforeLogout = true`, nil)
		guest.click(t, "#logout-btn")
		guest.waitVisible(t, "#confirm-dialog")
		guest.click(t, "#confirm-yes")
		// A logout ends by reloading the page, once the device copy is deleted: the login form
		// may show before that, and a click on it would be lost with the old page.
		guest.waitJS(t, "the page reloaded after logout", `window.beforeLogout === undefined && document.readyState === 'complete'`)
		guest.waitVisible(t, "#login-form")
		// The card's connection line changes height as the socket connects: click once it has,
		// or the click lands where the button was.
		guest.waitJS(t, "connected", `document.body.dataset.conn === 'connected'`)

		// An account without questions cannot be reset, and the page says so.
		guest.click(t, "#forgot-btn")
		guest.waitVisible(t, "#reset-form")
		guest.typeInto(t, "#reset-username", plain)
		guest.click(t, "#reset-submit")
		guest.waitJS(t, "no reset without questions", textIs("#reset-form .form-error",
			"Couldn't look up your security questions: Password reset is not set up for this user."))

		// One with questions: the right answers set a new password and log in with it.
		dave := dialRaw(t, srv)
		dave.name = uniqueName("dave")
		q1, q2 := "What was the name of your first pet?", "In what city were you born?"
		dave.ok("CreateUser", map[string]any{"username": dave.name, "password": testPassword, "secQuests": []map[string]string{
			{"Question": q1, "Answer": "Rex"}, {"Question": q2, "Answer": "Lyon"},
		}})
		guest.replaceText(t, "#reset-username", dave.name)
		guest.click(t, "#reset-submit")
		guest.waitJS(t, "dave's questions", textIs("#reset-q1", q1)+` && `+textIs("#reset-q2", q2)+` && `+textIs("#reset-submit", "Set new password"))
		guest.typeInto(t, "#reset-a1", "Rex")
		guest.typeInto(t, "#reset-a2", "Paris")
		newPassword := "reset by the questions"
		guest.typeInto(t, "#reset-password", newPassword)
		guest.click(t, "#reset-submit")
		guest.waitJS(t, "wrong answers refused", textIs("#reset-form .form-error", "Those answers are not right. Check them and try again."))
		guest.screenshot(t, "reset-phone.png")
		guest.replaceText(t, "#reset-a2", " lyon ") // answers compare trimmed, without regard to case
		guest.click(t, "#reset-submit")
		guest.name = dave.name
		guest.waitJS(t, "logged in with the new password", `!document.getElementById('chat-view').hidden && document.body.dataset.conn === 'online'`+
			` && `+textIs("#me-name", dave.name))
		dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": dave.name, "password": newPassword})
	})
	t.Logf("browser tests took %v", time.Since(start).Round(time.Millisecond))
}
