package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
)

// Timeline events (DESIGN §3.2): a rename, members added, a member removed or leaving is stored in
// the conversation's table as a message of kind "event", so that every member, and every later
// sync, sees it in the timeline. Its content is JSON the client words: {"type": "rename",
// "name"}, {"type": "add", "users"}, {"type": "remove", "users"} or {"type": "leave"}; its
// f_username is who did it. Events do not count as unread.

const kindEvent = "event"

// convoEvent is an event message's content.
type convoEvent struct {
	Type  string   `json:"type"`
	Name  string   `json:"name,omitempty"`
	Users []string `json:"users,omitempty"`
}

// postEvent stores an event in c's timeline and pushes it to the members and to extra users (a
// removed member). The change it records is made already, so a failure is logged, not returned:
// the event is history, not the change itself.
func (db *Database) postEvent(ctx context.Context, c *ConvoRecord, actor string, ev convoEvent, extra ...string) {
	content, err := json.Marshal(ev)
	if err != nil {
		slog.Error("encoding a timeline event", "err", err)
		return
	}
	m := &Message{Cmd: "SendMessage", CID: c.CID, FUsername: actor, Content: string(content), Kind: kindEvent}
	if _, err := db.insertMessage(ctx, db.pool, m); err != nil {
		slog.Error("storing a timeline event", "cid", c.CID, "type", ev.Type, "err", err)
		return
	}
	to := *c
	to.Members = append(slices.Clone(c.Members), extra...)
	if err := db.deliver(&to, m); err != nil {
		slog.Error("delivering a timeline event", "cid", c.CID, "err", err)
	}
}
