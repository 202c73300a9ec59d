package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Creating a conversation stores three things: its message table, its record, and an entry in
// each member's list. With the PostgreSQL quick store the three are one transaction: the
// conversation exists whole or not at all, and it costs one commit (one disk sync) instead of
// three — which also matters to the CREATE TABLE itself, whose five new files wait behind the
// other commits' syncs on a busy disk. With Aerospike they are written one after the other: the
// table first, dropped again if the record cannot be written, then the members' entries.

// storeNewConvo stores a conversation just made, with its members listed.
func (db *Database) storeNewConvo(ctx context.Context, c *ConvoRecord) error {
	if pq, ok := db.quick.(*postgresQuickStore); ok {
		return db.storeNewConvoInOne(ctx, pq, c)
	}
	if err := db.createConvoTable(ctx, c.CID); err != nil {
		return err
	}
	if err := putRecord(ctx, db.quick, convoKey(c.CID), c, PutOptions{Mode: CreateOnly}); err != nil {
		db.dropConvoTable(ctx, c.CID)
		return fmt.Errorf("storing conversation: %w", err)
	}
	return db.joinConvo(ctx, c.CID, c.Members)
}

// storeNewConvoInOne is storeNewConvo in one PostgreSQL transaction.
func (db *Database) storeNewConvoInOne(ctx context.Context, pq *postgresQuickStore, c *ConvoRecord) error {
	key := convoKey(c.CID)
	data, err := encodeRecord(key, c)
	if err != nil {
		return err
	}
	put, args, err := putStatement(key, Bins{dataBin: data}, PutOptions{Mode: CreateOnly})
	if err != nil {
		return err
	}
	plan, err := planMapOps([]MapOp{{Bin: convosBin, Key: c.CID, Value: time.Now().Unix()}})
	if err != nil {
		return err
	}
	members := slices.Clone(c.Members)
	// In key order, as ModifyMapsMany locks them: two creations never wait on each other.
	slices.SortFunc(members, func(a, b string) int { return cmp.Compare(userKey(a).String(), userKey(b).String()) })
	gone := make([]error, len(members))
	gens := make([]uint32, len(members))
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(convTableDDL, convTable(c.CID))); err != nil {
			return fmt.Errorf("creating table %s: %w", convTable(c.CID), err)
		}
		b := &pgx.Batch{}
		b.Queue(put, args...).QueryRow(func(row pgx.Row) error {
			var gen int64
			if err := row.Scan(&gen); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("storing conversation %s: %w", c.CID, ErrExists)
			} else if err != nil {
				return fmt.Errorf("storing conversation %s: %w", c.CID, err)
			}
			return nil
		})
		for i, m := range members {
			queueModify(b, userKey(m), plan, &gens[i], &gone[i])
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return err
	}
	db.convTables.Store(c.CID, true)
	for i, m := range members {
		if gone[i] == nil {
			continue
		}
		// Deleted since it was named: its name must not stay in the conversation, where a new
		// account with that name would find it.
		if err := db.dropMember(ctx, c.CID, m); err != nil {
			return fmt.Errorf("adding %s to %s: %w", m, c.CID, err)
		}
	}
	return nil
}
