package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A conversation is stored whole or not at all: when its record cannot be written (here, its
// key is taken), no table is left behind and no member lists it.
func TestNewConversationIsStoredWholeOrNotAtAll(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db := srv.db

	c := &ConvoRecord{CID: newCID(), Name: "taken", Members: []string{alice.name, bob.name},
		ReadTimes: map[string]string{}, Files: []string{}, Created: formatTime(time.Now())}
	if err := putRecord(ctx, db.quick, convoKey(c.CID), &ConvoRecord{CID: c.CID, Name: "first"}, PutOptions{Mode: CreateOnly}); err != nil {
		t.Fatal(err)
	}
	if err := db.storeNewConvo(ctx, c); !errors.Is(err, ErrExists) {
		t.Fatalf("storing over a taken key: %v, want ErrExists", err)
	}
	var table *string
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass($1)::text", convTable(c.CID)).Scan(&table); err != nil || table != nil {
		t.Fatalf("table %v left behind (%v)", table, err)
	}
	for _, name := range []string{alice.name, bob.name} {
		u, err := db.getUser(ctx, name)
		if err != nil || u.Convos[c.CID] != nil {
			t.Fatalf("%s lists the conversation that failed (%v)", name, err)
		}
	}

	// The same conversation under a free key: table, record and both members' entries.
	c.CID = newCID()
	if err := db.storeNewConvo(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass($1)::text", convTable(c.CID)).Scan(&table); err != nil || table == nil {
		t.Fatalf("no table (%v)", err)
	}
	if got, err := db.getConvo(ctx, c.CID); err != nil || got.Name != "taken" {
		t.Fatalf("record %+v, %v", got, err)
	}
	for _, name := range []string{alice.name, bob.name} {
		if u, err := db.getUser(ctx, name); err != nil || u.Convos[c.CID] == nil {
			t.Fatalf("%s does not list the conversation (%v)", name, err)
		}
	}

	// A member gone since it was named (deleted meanwhile) is left out of the conversation, so
	// that a later account with that name does not find itself in it.
	c.CID, c.Members = newCID(), []string{alice.name, uniqueName("ghost")}
	if err := db.storeNewConvo(ctx, c); err != nil {
		t.Fatal(err)
	}
	db.convos.drop(c.CID)
	if got, err := db.getConvo(ctx, c.CID); err != nil || len(got.Members) != 1 || got.Members[0] != alice.name {
		t.Fatalf("members %v (%v), want only %s", got.Members, err, alice.name)
	}
}
