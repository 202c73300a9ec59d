package main

// Browser test of files in the web client: attaching an image and a text file through the
// attach button (with upload progress), the image shown inline as a thumbnail and the text file
// as a download chip in the other user's browser, a profile picture uploaded in the settings and
// shown where avatars are, and the quota in the settings. One server and one browser; the
// helpers are web_test.go's and web_settings_test.go's.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// setFiles chooses files in a file input, as the file picker does.
func (p *page) setFiles(t testing.TB, sel string, paths ...string) {
	t.Helper()
	p.do(t, chromedp.SetUploadFiles(chromedp.CSS(sel), paths))
}

// writeFile writes a file for the browser to upload and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWebFiles(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	base := "http://" + srv.addr
	dir := t.TempDir()
	img := testPNG(t, 600, 400)
	imgPath := writeFile(t, dir, "sunset.png", img)
	text := []byte(strings.Repeat("meeting notes\n", 300))
	textPath := writeFile(t, dir, "notes.txt", text)
	picPath := writeFile(t, dir, "me.png", testPNG(t, 96, 96))
	lateImg, bombImg := testPNG(t, 500, 250), pngClaimingDepth(t, 5000, 5000, 16)

	alice := newPage(t, browser, base, 1280, 800)
	bob := newPage(t, browser, base, 1280, 800)
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")
	alice.register(t, aliceName)
	bob.register(t, bobName)
	ac := login(t, srv, aliceName)
	ac.ok("CreateConversation", map[string]any{"Name": "Holiday", "Members": []string{bobName}})
	alice.openConvo(t, "Holiday")
	bob.openConvo(t, "Holiday")

	t.Run("attach an image and a text file", func(t *testing.T) {
		// Record the upload progress events the page shows.
		alice.eval(t, `(() => {
			window.progressSeen = [];
			new MutationObserver(() => {
				for (const p of document.querySelectorAll('#uploads progress')) window.progressSeen.push(p.value);
			}).observe(document.getElementById('uploads'), {subtree: true, attributes: true, childList: true});
			return true;
		})()`, nil)
		alice.setFiles(t, "#attach-input", imgPath, textPath)
		alice.waitJS(t, "both files sent", `document.querySelectorAll('#messages .msg.mine[data-state="sent"] .file-msg').length === 2 && document.getElementById('uploads').hidden`)
		var seen []float64
		alice.eval(t, `window.progressSeen`, &seen)
		if len(seen) == 0 {
			t.Errorf("no upload progress was shown")
		}
		// bob sees the picture as a picture (its thumbnail loaded) and the text file as a chip.
		bob.waitJS(t, "the thumbnail in bob's browser", `(() => {
			const im = document.querySelector('#messages .msg.theirs .file-image img.file-thumb');
			return im && im.complete && im.naturalWidth === 320 && im.alt === 'sunset.png' && /\/thumb\?t=/.test(im.src);
		})()`)
		bob.waitJS(t, "the chip in bob's browser", fmt.Sprintf(`(() => {
			const c = document.querySelector('#messages .msg.theirs .file-chip');
			return c && c.querySelector('.file-name').textContent === 'notes.txt' && c.querySelector('.file-size').textContent === %s &&
				c.getAttribute('download') === 'notes.txt' && /^\/files\/[0-9a-f]{32}\?t=/.test(c.getAttribute('href'));
		})()`, js(fmt.Sprintf("%.1f KB", float64(len(text))/1024))))
		var full string
		bob.eval(t, `document.querySelector('#messages .file-image').getAttribute('href')`, &full)
		if !strings.HasPrefix(full, "/files/") || strings.Contains(full, "/thumb") {
			t.Errorf("the thumbnail links to %q, want the full picture", full)
		}
		// The conversation list says what it is rather than showing the message's JSON.
		bob.waitJS(t, "the list's preview", `[...document.querySelectorAll('.ci-last')].some((e) => /: (File: notes\.txt|Picture: sunset\.png)$/.test(e.textContent))`)
		// A message that only looks like a file message is text.
		fake := `{"file":{"url":"https://evil.example/x.png","name":"x"}}`
		alice.send(t, fake)
		bob.waitJS(t, "the fake file message as text", messageCount(fake)+` === 1`)
		// Dropping a file onto the conversation attaches it too.
		alice.eval(t, `(() => {
			const dt = new DataTransfer();
			dt.items.add(new File(['dropped in'], 'dropped.txt', {type: 'text/plain'}));
			const zone = document.getElementById('convo');
			zone.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true, cancelable: true}));
			const shown = zone.classList.contains('dropping');
			zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
			return shown;
		})()`, nil)
		bob.waitJS(t, "the dropped file in bob's browser", `[...document.querySelectorAll('#messages .file-chip .file-name')].some((e) => e.textContent === 'dropped.txt')`)
		// Deleting a file's message deletes the file too, and gives its space back. (Its actions
		// come with the acknowledgement, which may reach alice after bob has the message.)
		alice.waitJS(t, "the dropped file's message with its actions", `[...document.querySelectorAll('#messages .msg')].some((li) =>
			[...li.querySelectorAll('.file-name')].some((e) => e.textContent === 'dropped.txt') && li.querySelector('.msg-actions .delete'))`)
		before := len(storedFiles(t, cfg))
		_, usedBefore := quotaOf(ac)
		alice.eval(t, `(() => {
			const li = [...document.querySelectorAll('#messages .msg')].find((li) => [...li.querySelectorAll('.file-name')].some((e) => e.textContent === 'dropped.txt'));
			li.classList.add('show-actions');
			li.querySelector('.msg-actions .delete').click();
			return true;
		})()`, nil)
		alice.waitVisible(t, "#confirm-dialog")
		alice.click(t, "#confirm-yes")
		bob.waitJS(t, "the file gone from bob's browser", `![...document.querySelectorAll('#messages .file-chip .file-name')].some((e) => e.textContent === 'dropped.txt')`)
		waitUntil(t, "the dropped file deleted and its space given back", func() bool {
			_, used := quotaOf(ac)
			return len(storedFiles(t, cfg)) == before-1 && used == usedBefore-int64(len("dropped in"))
		})
		bob.screenshot(t, "files-bob.png")
		alice.screenshot(t, "files-alice.png")
	})

	t.Run("a thumbnail that comes later, or never", func(t *testing.T) {
		// The server's thumbnail worker holds alice's next picture until we say.
		gate := make(chan struct{})
		var once sync.Once
		hook := func(string) { once.Do(func() { <-gate }) }
		srv.db.files.thumbs.hook.Store(&hook)
		defer close(gate)
		late := writeFile(t, dir, "late.png", lateImg)
		alice.setFiles(t, "#attach-input", late)
		chip := `[...document.querySelectorAll('#messages .msg.theirs .file-chip.no-preview')].find((a) => a.querySelector('.file-name').textContent === 'late.png')`
		bob.waitJS(t, "the picture shown as a file without a preview", `(() => {
			const a = `+chip+`;
			return a && /^Picture: late\.png.*no preview$/.test(a.textContent.replace(/\s+/g, ' ').trim()) &&
				/^\/files\/[0-9a-f]{32}\?t=/.test(a.getAttribute('href')) && a.target === '_blank' && !a.hasAttribute('download');
		})()`)
		// Keyboard: bob is on the link when the thumbnail arrives, and stays on the picture's.
		bob.eval(t, `(() => { `+chip+`.focus(); return true; })()`, nil)
		gate <- struct{}{}
		bob.waitJS(t, "the thumbnail replacing it, focus kept", `(() => {
			const im = [...document.querySelectorAll('#messages .msg.theirs .file-image img.file-thumb')].find((i) => i.alt === 'late.png');
			return im && im.complete && im.naturalWidth === 320 && document.activeElement === im.closest('a.file-image');
		})()`)

		// A tiny file claiming a 16-bit 5000×5000 picture: stored, never decoded, shown as a file.
		bomb := writeFile(t, dir, "huge.png", bombImg)
		alice.setFiles(t, "#attach-input", bomb)
		bob.waitJS(t, "the undecodable picture as a file", `[...document.querySelectorAll('#messages .msg.theirs .file-chip.no-preview .file-name')].some((e) => e.textContent === 'huge.png')`)
		var thumbs int
		bob.eval(t, `[...document.querySelectorAll('#messages img.file-thumb')].filter((i) => i.alt === 'huge.png').length`, &thumbs)
		if thumbs != 0 {
			t.Fatalf("%d thumbnails of the bomb shown", thumbs)
		}
		bob.screenshot(t, "files-no-preview.png")
	})

	t.Run("file links keep working after a password change", func(t *testing.T) {
		alice.openSettings(t)
		alice.typeInto(t, "#pw-old", testPassword)
		alice.typeInto(t, "#pw-new", "a new and longer passphrase")
		alice.click(t, "#password-form button[type=submit]")
		alice.waitJS(t, "changed", textIs("#password-form .form-ok", "Password changed. Your other devices were logged out."))
		alice.click(t, "#settings-dialog .dialog-head [data-close]")
		// The links on screen get the new session's token: fetching one works.
		alice.waitJS(t, "the links renewed", `(() => {
			const a = [...document.querySelectorAll('#messages a.file-chip')].find((a) => a.querySelector('.file-name').textContent === 'notes.txt');
			if (!a) return false;
			if (window.renewedStatus === undefined) {
				window.renewedStatus = 0;
				fetch(a.href).then((r) => { window.renewedStatus = r.status; }, () => { window.renewedStatus = -1; });
			} else if (window.renewedStatus !== 200) {
				window.renewedStatus = undefined; // not yet: ask again
			}
			return window.renewedStatus === 200;
		})()`)
	})

	t.Run("profile picture and quota in the settings", func(t *testing.T) {
		alice.openSettings(t)
		alice.waitJS(t, "the quota", textIs("#quota-text", fmt.Sprintf("%.1f KB of 2.0 GB used", float64(len(img)+len(text)+len("dropped in")+len(lateImg)+len(bombImg))/1024)))
		alice.setFiles(t, "#pic-file", textPath)
		alice.waitJS(t, "a text file refused as a picture", `document.querySelector('#pic-form .form-error').textContent.includes('pick a picture')`)
		alice.setFiles(t, "#pic-file", picPath)
		alice.waitJS(t, "the picture saved", textIs("#pic-form .form-ok", "Profile picture saved.")+
			` && document.querySelector('#pic-preview img.avatar-pic') && document.querySelector('#me-avatar img.avatar-pic')`)
		alice.screenshot(t, "files-settings.png")
		alice.click(t, "#settings-dialog .dialog-head [data-close]")
		// bob, loading the page again, sees alice's picture in the conversation list.
		bob.do(t, chromedp.Reload())
		bob.waitJS(t, "alice's picture in bob's list", `(() => {
			const im = document.querySelector('.convo-item .avatar img.avatar-pic');
			return im && im.complete && im.naturalWidth === 96;
		})()`)
		bob.openConvo(t, "Holiday")
		bob.waitJS(t, "alice's picture beside her messages", `document.querySelector('#messages .msg.theirs .avatar img.avatar-pic')`)
		bob.screenshot(t, "files-bob-avatar.png")
	})
	t.Logf("TestWebFiles took %v", time.Since(start))
}
