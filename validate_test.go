package main

import "testing"

func TestNormalEmail(t *testing.T) {
	cases := []struct{ in, want string }{
		{"  Kate@Example.ORG ", "kate@example.org"},
		{"\u212Aate@example.org", "\u212Aate@example.org"}, // KELVIN SIGN is not "k"
		{"ünï@Bücher.Example", "ünï@xn--bcher-kva.example"},
		{"a@xn--bcher-kva.example", "a@xn--bcher-kva.example"},
		{"", ""},
	}
	for _, c := range cases {
		got, err := normalEmail(c.in)
		if err != nil || got != c.want {
			t.Errorf("normalEmail(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"not an address", "a@", "Name <a@example.org>", "a@exa mple.org"} {
		if _, err := normalEmail(bad); err == nil {
			t.Errorf("normalEmail(%q) accepted", bad)
		}
	}
}

// TestHiddenCharactersAreRefused: through the socket, names that others see (conversations,
// files), reactions and security questions refuse bidirectional controls and invisible format
// characters with a clear error and change nothing, while the joiners that scripts and emoji need
// pass; message bodies keep what was written (DESIGN §7).
func TestHiddenCharactersAreRefused(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "bidi")
	const hidden = "may not contain control characters or invisible formatting characters"
	cid := newConvo(t, alice, "plain")
	for _, name := range []string{"pay\u202Eexe.txt", "a\u2066b\u2069", "x\u200By", "\ufeffname", "soft\u00adhyphen", "l\u200er", "tag\U000E0041"} {
		alice.fails("CreateConversation", map[string]any{"Name": name}, hidden)
		alice.fails("ChangeConvoName", map[string]any{"CID": cid, "Name": name}, hidden)
		alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": name, "Size": 10, "ContentType": "text/plain"}, hidden)
	}
	data := alice.ok("GetConvoData", map[string]any{"CID": cid})
	if data["Name"] != "plain" {
		t.Fatalf("name after refused renames: %v", data["Name"])
	}
	// Persian with ZERO WIDTH NON-JOINER, Hindi with ZERO WIDTH JOINER: what the scripts need.
	alice.ok("ChangeConvoName", map[string]any{"CID": cid, "Name": "می\u200cخواهم"})
	alice.ok("GetS3PolicyData", map[string]any{"CID": cid, "Name": "क्\u200dष.pdf", "Size": 10, "ContentType": "application/pdf"})

	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "abc \u202Edef\u202C ghi", "client_id": "bidi-body"})
	msgs := alice.ok("GetConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	if last["content"] != "abc \u202Edef\u202C ghi" {
		t.Fatalf("message body %q: a body keeps what was written", last["content"])
	}
	id, mt := last["id"], last["m_time"]
	for _, e := range []string{"\U0001F44D\u202E", "\u200B", "\u2067\U0001F44D", "\U0001F44D\U000E0041"} {
		alice.fails("React", map[string]any{"CID": cid, "ID": id, "M_time": mt, "emoji": e, "on": true}, hidden)
	}
	for _, e := range []string{
		"\U0001F468\u200D\U0001F469\u200D\U0001F467", // family: joiners
		"\u2764\uFE0F", // heart with its variation selector
		"\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F", // Scotland: a flag of tags
	} {
		alice.ok("React", map[string]any{"CID": cid, "ID": id, "M_time": mt, "emoji": e, "on": true})
	}

	c := dialRaw(t, srv)
	c.name = uniqueName("bidiq")
	c.fails("CreateUser", map[string]any{"username": c.name, "password": testPassword,
		"secQuests": []map[string]any{{"Question": "first pet\u202E", "Answer": "a1"}, {"Question": "q2", "Answer": "a2"}}}, hidden)
	if e, _ := dialRaw(t, srv).call("ValidateUser", map[string]any{"username": c.name, "password": testPassword})["error"].(string); e == "" {
		t.Fatal("the refused registration made the account")
	}
}
