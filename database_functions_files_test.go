package main

import (
	"math"
	"net/http"
	"testing"
)

func TestConvoFilesAndRemovalGiveQuotaBack(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admins = "placeholder"
	srv := startServer(t, cfg)
	alice, bob, eve := register(t, srv, "rfa"), register(t, srv, "rfb"), register(t, srv, "rfe")
	cid := newConvo(t, alice, "removal", bob)
	other := newConvo(t, alice, "other")
	data := make([]byte, 1234)
	url := uploadFile(t, srv, alice, cid, "report.pdf", data)
	if _, used := quotaOf(alice); used != 1234 {
		t.Fatalf("QuotaUsed %d after upload, want 1234", used)
	}

	// Only this server's file URLs, uploaded by the user for this conversation.
	alice.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": "https://evil.example/x.png"}, "fileURL")
	alice.fails("UpdateConvoFiles", map[string]any{"CID": other, "fileURL": url}, "not a file you uploaded")
	bob.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url}, "not a file you uploaded")
	eve.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url}, "not a member")
	alice.ok("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url})
	bob.waitPush("files", func(p map[string]any) bool { return p["cmd"] == "UpdateConvoFiles" && p["fileURL"] == url })

	// Removal: not by another member, not by a non-member; by the uploader.
	bob.fails("RemoveConvoFile", map[string]any{"CID": cid, "fileURL": url}, "Only the uploader")
	eve.fails("RemoveConvoFile", map[string]any{"CID": cid, "fileURL": url}, "not a member")
	alice.ok("RemoveConvoFile", map[string]any{"CID": cid, "fileURL": url})
	bob.waitPush("removed", func(p map[string]any) bool { return p["cmd"] == "RemoveConvoFile" && p["fileURL"] == url })
	if _, used := quotaOf(alice); used != 0 {
		t.Fatalf("QuotaUsed %d after removal, want 0", used)
	}
	if files := bob.ok("GetConvoData", map[string]any{"CID": cid})["Files"].([]any); len(files) != 0 {
		t.Fatalf("files after removal: %v", files)
	}
	if resp := getFile(t, srv, url+"?t="+fileToken(bob)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("removed file: %d", resp.StatusCode)
	}
	if files := storedFiles(t, cfg); len(files) != 0 {
		t.Fatalf("removal left %v", files)
	}
}

func TestQuotaCommandsAreForAdministrators(t *testing.T) {
	cfg := testConfig(t)
	name := uniqueName("admin")
	cfg.Admins = "someone_else, " + name
	cfg.DefaultQuota = 5000
	srv := startServer(t, cfg)
	admin := dialRaw(t, srv)
	admin.name = name
	admin.ok("CreateUser", map[string]any{"username": name, "password": testPassword})
	alice, bob := register(t, srv, "qa"), register(t, srv, "qb")
	cid := newConvo(t, alice, "q", bob)

	for _, cmd := range []string{"AddToQuota", "AddToQuotaUsed"} {
		alice.fails(cmd, map[string]any{"username": alice.name, "Size": 1 << 40}, "Only administrators")
	}
	rep := admin.ok("AddToQuota", map[string]any{"username": alice.name, "Size": 1000})
	if rep["Quota"] != float64(6000) || rep["Username"] != alice.name {
		t.Fatalf("AddToQuota: %v", rep)
	}
	alice.waitPush("UpdateUser", func(p map[string]any) bool { return p["cmd"] == "UpdateUser" && p["Quota"] == float64(6000) })
	admin.ok("AddToQuotaUsed", map[string]any{"username": alice.name, "Size": 5500})
	alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": "a.bin", "Size": 501, "ContentType": "application/octet-stream"}, "Over your quota")
	admin.fails("AddToQuota", map[string]any{"username": alice.name, "Size": int64(math.MaxInt64)}, "overflow")
	if rep := admin.ok("AddToQuotaUsed", map[string]any{"username": alice.name, "Size": -1 << 40}); rep["QuotaUsed"] != float64(0) {
		t.Fatalf("QuotaUsed below zero: %v", rep)
	}
	admin.fails("AddToQuota", map[string]any{"username": uniqueName("nobody"), "Size": 1}, "No such user")

	// An administrator may remove anyone's file from a conversation.
	url := uploadFile(t, srv, bob, cid, "b.txt", []byte("bob's"))
	admin.ok("RemoveConvoFile", map[string]any{"CID": cid, "fileURL": url})
	if _, used := quotaOf(bob); used != 0 {
		t.Fatalf("bob's QuotaUsed %d after an administrator removed his file", used)
	}
}

func TestProfilePicturesAreOwnUploadsServedToAnyone(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice, bob := register(t, srv, "pa"), register(t, srv, "pb")
	cid := newConvo(t, alice, "pics", bob)
	pic := testPNG(t, 64, 64)
	alice.fails("ChangeProfilePic", map[string]any{"ProfilePic": "https://pics.example/me.png"}, "ProfilePic")
	convoFile := uploadFile(t, srv, alice, cid, "me.png", pic)
	alice.fails("ChangeProfilePic", map[string]any{"ProfilePic": convoFile}, "ProfilePic")
	bobs := uploadFile(t, srv, bob, profileCID, "bob.png", pic)
	alice.fails("ChangeProfilePic", map[string]any{"ProfilePic": bobs}, "ProfilePic")

	alice.fails("GetS3PolicyData", map[string]any{"CID": profileCID, "Name": "me.svg", "Size": 100, "ContentType": "image/svg+xml"}, "A profile picture is")
	alice.fails("GetS3PolicyData", map[string]any{"CID": profileCID, "Name": "me.png", "Size": maxProfileSize + 1, "ContentType": "image/png"}, "A profile picture is")
	notPic := uploadFile(t, srv, alice, profileCID, "me.png", []byte("<html>not a picture</html>"))
	alice.fails("ChangeProfilePic", map[string]any{"ProfilePic": notPic}, "ProfilePic")
	first := uploadFile(t, srv, alice, profileCID, "me.png", pic)
	if resp := getFile(t, srv, first); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a profile upload not (yet) the picture is public: %d", resp.StatusCode)
	}
	alice.ok("ChangeProfilePic", map[string]any{"ProfilePic": first})
	if pub := bob.ok("GetUserByUsername", map[string]any{"username": alice.name}); pub["ProfilePic"] != first {
		t.Fatalf("public view: %v", pub)
	}
	if resp := getFile(t, srv, first); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("profile picture without a token: %d %v", resp.StatusCode, resp.Header)
	}
	// A new picture replaces the old one, whose space comes back.
	second := uploadFile(t, srv, alice, profileCID, "me2.png", pic)
	view := alice.ok("ChangeProfilePic", map[string]any{"ProfilePic": second})
	want := 2*len(pic) + len("<html>not a picture</html>") // the conversation file, the refused upload, the new picture
	if view["QuotaUsed"] != float64(want) {
		t.Fatalf("QuotaUsed %v, want %d", view["QuotaUsed"], want)
	}
	if resp := getFile(t, srv, first); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("replaced picture: %d", resp.StatusCode)
	}
	// Deleting the account deletes the picture's bytes; a file shared in a conversation stays,
	// like the messages.
	alice.ok("DeleteUser", map[string]any{"password": testPassword})
	if _, err := srv.db.files.getFile(t.Context(), fileIDOf(second)); !isNotFound(err) {
		t.Fatalf("the profile picture's record after DeleteUser: %v", err)
	}
	if _, err := srv.db.files.getFile(t.Context(), fileIDOf(convoFile)); err != nil {
		t.Fatalf("the conversation's file after DeleteUser: %v", err)
	}
}
