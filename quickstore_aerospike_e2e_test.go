package main

import (
	"strings"
	"testing"
)

// The end-to-end suites of the server, run again with the Aerospike quick store: against the
// aerotest server always, and against a real Aerospike when AEROSPIKE_HOST (host:port) is set.
var endToEndSuites = []struct {
	name string
	fn   func(*testing.T)
}{
	{"Messages", TestMessagesFlowLiveBothWays},
	{"Paging", TestGetMoreConvoMessagesPagesEveryMessageOnce},
	{"Login", TestRegisterLoginResumeLogout},
	{"LoginErrors", TestLoginErrors},
	{"Verification", TestContactVerification},
	{"Deletion", TestInterruptedDeletionIsFinished},
	{"Blocking", TestBlockingAndConversationLimits},
	{"NonMember", TestNonMemberIsRefusedAndLearnsNothing},
	{"Membership", TestMembershipChanges},
	{"ReadReceipts", TestReadReceiptsTypingAndUnreadCounts},
	{"TwoInstances", TestTwoInstancesShareNATSAndPostgres},
	{"PasswordReset", TestPasswordReset},
	{"ChangePassword", TestChangeUserPasswordRevokesOtherSessions},
	{"Profile", TestChangeEmailPhoneAndProfile},
	{"DeleteUser", TestDeleteUserRemovesEverything},
	{"Friends", TestFriendRequests},
	{"ConcurrentFriends", TestConcurrentFriendRequestsStayConsistent},
	{"Scheduled", TestScheduledMessagesDeliveredOnceByTwoInstances},
	{"Autoreply", TestAutoreplyOncePerConversation},
	{"Uploads", TestUploadURLsAreSignedExpiringAndSingleUse},
	{"FileQuota", TestConvoFilesAndRemovalGiveQuotaBack},
	{"MembershipAtomic", TestMembershipChangesAreNeverLost},
	{"LegacyMembership", TestLegacyUserRecordsMoveTheirConversations},
	{"ConvoWhole", TestNewConversationIsStoredWholeOrNotAtAll},
}

func runEndToEnd(t *testing.T, spec string) {
	testQuickStore = spec
	t.Cleanup(func() { testQuickStore = "" })
	for _, s := range endToEndSuites {
		t.Run(s.name, s.fn)
	}
}

func TestEndToEndOnAerotest(t *testing.T) {
	srv := qsStartAerotest(t, "127.0.0.1:0")
	runEndToEnd(t, "aerospike://"+srv.Addr())
}

func TestEndToEndOnRealAerospike(t *testing.T) {
	runEndToEnd(t, startRealAerospike(t).spec)
}

// While Aerospike is away, commands answer a clear error and change nothing; when it is back,
// the same pingedchat carries on.
func TestAerospikeOutageAndRecovery(t *testing.T) {
	as := qsStartAerotest(t, "127.0.0.1:0")
	testQuickStore = "aerospike://" + as.Addr()
	t.Cleanup(func() { testQuickStore = "" })
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "outage")
	bob := register(t, srv, "outpeer")
	cid := newConvo(t, alice, "before", bob)

	as.Stop()
	alice.fails("SendMessage", map[string]any{"CID": cid, "content": "lost?"}, "storage unavailable")
	alice.fails("ChangeConvoName", map[string]any{"CID": cid, "Name": "during"}, "storage unavailable")
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": bob.name, "password": testPassword}, "storage unavailable")

	if err := as.Restart(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "commands to work again", func() bool {
		rep := alice.call("SendMessage", map[string]any{"CID": cid, "content": "after"})
		return rep["ok"] == true
	})
	data := bob.ok("GetAllConvoData", map[string]any{"CID": cid})
	if data["Name"] != "before" {
		t.Fatalf("name changed during the outage: %v", data["Name"])
	}
	for _, m := range data["Messages"].([]any) {
		if strings.Contains(m.(map[string]any)["content"].(string), "lost?") {
			t.Fatalf("a refused message was stored: %v", m)
		}
	}
	login(t, srv, bob.name)
}

// What pingedchat deletes stays deleted through an Aerospike cold restart (CE brings back
// deleted data): a token revoked by Logout, a deleted user and its name. On aerotest, and on a
// real node stopped both ways: SIGKILL once the deletions are flushed, and SIGTERM.
func TestDeletesSurviveAerospikeColdRestart(t *testing.T) {
	t.Run("aerotest", func(t *testing.T) {
		as := qsStartAerotest(t, "127.0.0.1:0")
		deletesSurviveColdRestart(t, "aerospike://"+as.Addr(), func(t *testing.T) {
			if err := as.ColdRestart(); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("real/SIGKILL", func(t *testing.T) {
		real := startRealAerospike(t)
		deletesSurviveColdRestart(t, real.spec, real.crashAfterFlush)
	})
	t.Run("real/SIGTERM", func(t *testing.T) {
		real := startRealAerospike(t)
		deletesSurviveColdRestart(t, real.spec, real.cleanRestart)
	})
}

func deletesSurviveColdRestart(t *testing.T, spec string, coldRestart func(t *testing.T)) {
	testQuickStore = spec
	t.Cleanup(func() { testQuickStore = "" })
	srv := startServer(t, testConfig(t))
	c := dialRaw(t, srv)
	c.name = uniqueName("revoked")
	token := c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})["session"]
	c.ok("Logout", nil)
	gone := register(t, srv, "gone")
	gone.ok("DeleteUser", map[string]any{"password": testPassword})
	gone.waitFor("the deleted user's session to close", func() bool { return gone.closed != nil })

	coldRestart(t)
	var rep map[string]any
	waitUntil(t, "the quick store to answer again", func() bool {
		rep = dialRaw(t, srv).call("ValidateUser", map[string]any{"username": c.name, "session": token})
		e, _ := rep["error"].(string)
		return !strings.Contains(e, "storage unavailable")
	})
	if e, _ := rep["error"].(string); !strings.Contains(e, "expired or revoked") {
		t.Fatalf("the revoked token after a cold restart: %v", rep)
	}
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": gone.name, "password": testPassword}, "Invalid username or password")
	dialRaw(t, srv).ok("CreateUser", map[string]any{"username": gone.name, "password": testPassword})
}
