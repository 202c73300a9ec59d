package main

import (
	"strings"
	"testing"
)

// data: URLs in inbound HTML (issue 25, item 22): only raster images, only as an <img src>. An
// SVG (which can carry script) or HTML document behind a link, or any data: link at all, is
// dropped. Through the real SMTP receiver, read back with GetEmail.
func TestDataURIsAreRasterImagesOnly(t *testing.T) {
	srv, _ := mailServer(t)
	c := register(t, srv, "dora")
	addr := c.name + "@" + testMailDomain
	if err := smtpSend(t, srv, "mallory@example.com", []string{addr}, sampleMail(t, "data_uris.eml", addr)); err != nil {
		t.Fatal(err)
	}
	id := c.waitPush("EmailReceived", isCmd("EmailReceived"))["Email"].(map[string]any)["ID"]
	html, _ := c.ok("GetEmail", map[string]any{"ID": id})["Email"].(map[string]any)["HTML"].(string)
	low := strings.ToLower(html)
	for _, bad := range []string{`href="data:`, `href=" data:`, "image/svg", "text/html", "utf8,"} {
		if strings.Contains(low, bad) {
			t.Errorf("sanitised HTML still has %q:\n%s", bad, html)
		}
	}
	for _, good := range []string{`<img alt="png" src="data:image/png;base64,iVBORw0KGgo`, `<img alt="gif" src="data:image/gif;base64,`,
		`<img alt="jpeg" src="data:image/jpeg;base64,`, `<img alt="webp" src="data:image/webp;base64,`,
		`<img alt="cid" src="cid:logo@example.net"`, `href="https://example.com/ok"`, `href="mailto:dora@example.com"`,
		"svg link", "png link", `<img alt="svg">`} {
		if !strings.Contains(html, good) {
			t.Errorf("sanitised HTML lost %q:\n%s", good, html)
		}
	}
	if n := strings.Count(low, "data:"); n != 4 {
		t.Errorf("%d data: URLs kept, want the 4 raster images:\n%s", n, html)
	}
}
