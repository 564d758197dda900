package app

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// errBadTerms reports search terms that are not a valid FTS5 query.
var errBadTerms = errors.New("invalid search terms")

// schema is the index the app keeps beside its JSON file. message_search is
// an FTS5 table over message bodies and attachment captions; contacts are
// looked up by phone.
const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id              TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL,
	body            TEXT NOT NULL,
	created_at      TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5(
	message_id UNINDEXED,
	body,
	captions,
	tokenize = 'unicode61'
);
CREATE TABLE IF NOT EXISTS contacts (
	id    TEXT PRIMARY KEY,
	name  TEXT NOT NULL,
	phone TEXT NOT NULL,
	notes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS contacts_phone ON contacts (phone);
`

// createdAtLayout has a fixed width, so created_at sorts as text in time order.
const createdAtLayout = "2006-01-02T15:04:05.000000000Z07:00"

// index is the SQLite database the app searches. The JSON file stays the
// record: the index is rebuilt from it when the app starts.
type index struct {
	db *sql.DB
}

// indexPath is the store's path with its extension replaced by ".db".
func indexPath(storePath string) string {
	return strings.TrimSuffix(storePath, filepath.Ext(storePath)) + ".db"
}

// openIndex opens (or creates) the database at path and fills it from s.
func openIndex(ctx context.Context, path string, s *Store) (*index, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	// Callers hold App.mu around every use; one connection means no SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	ix := &index{db: db}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create index %s: %w", path, err)
	}
	if err := ix.rebuild(ctx, s); err != nil {
		db.Close()
		return nil, fmt.Errorf("rebuild index %s: %w", path, err)
	}
	return ix, nil
}

func (ix *index) Close() error { return ix.db.Close() }

// rebuild replaces every row with what s holds.
func (ix *index) rebuild(ctx context.Context, s *Store) error {
	return ix.commit(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, table := range []string{"messages", "message_search", "contacts"} {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
				return err
			}
		}
		for _, m := range s.Messages {
			if err := addMessage(ctx, tx, m); err != nil {
				return err
			}
		}
		for _, c := range s.Contacts {
			if err := addContact(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
	}, func() error { return nil })
}

// commit runs add in a transaction and commits it only if persist succeeds,
// so the index holds no row the JSON file lacks.
func (ix *index) commit(ctx context.Context, add func(context.Context, *sql.Tx) error, persist func() error) error {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := add(ctx, tx); err != nil {
		return err
	}
	if err := persist(); err != nil {
		return err
	}
	return tx.Commit()
}

func addMessage(ctx context.Context, tx *sql.Tx, m Message) error {
	body := indexText(m.Body)
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO messages (id, conversation_id, body, created_at) VALUES (?, ?, ?, ?)`,
		m.ID, m.ConversationID, body, m.CreatedAt.UTC().Format(createdAtLayout)); err != nil {
		return fmt.Errorf("index message %s: %w", m.ID, err)
	}
	captions := make([]string, 0, len(m.Attachments))
	for _, at := range m.Attachments {
		captions = append(captions, indexText(at.Caption))
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO message_search (message_id, body, captions) VALUES (?, ?, ?)`,
		m.ID, body, strings.Join(captions, "\n")); err != nil {
		return fmt.Errorf("index message %s: %w", m.ID, err)
	}
	return nil
}

func addContact(ctx context.Context, tx *sql.Tx, c Contact) error {
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO contacts (id, name, phone, notes) VALUES (?, ?, ?, ?)`,
		c.ID, c.Name, c.Phone, indexText(c.Notes)); err != nil {
		return fmt.Errorf("index contact %s: %w", c.ID, err)
	}
	return nil
}

// searchMessages returns the ids of the messages that match terms, an FTS5
// query passed as is, oldest first. Terms SQLite cannot parse wrap errBadTerms.
func (ix *index) searchMessages(ctx context.Context, terms string) ([]string, error) {
	ids, err := ix.ids(ctx, `
		SELECT m.id FROM message_search s JOIN messages m ON m.id = s.message_id
		WHERE message_search MATCH ?
		ORDER BY m.created_at, m.id`, terms)
	// The statement is fixed, so a generic SQL error can only come from the terms.
	if se, ok := errors.AsType[*sqlite.Error](err); ok && se.Code()&0xff == sqlite3.SQLITE_ERROR {
		return nil, fmt.Errorf("%w: %w", errBadTerms, err)
	}
	return ids, err
}

// contactsByPhone returns the ids of the contacts whose phone is phone, in the order they were created.
func (ix *index) contactsByPhone(ctx context.Context, phone string) ([]string, error) {
	return ix.ids(ctx, `SELECT id FROM contacts WHERE phone = ? ORDER BY rowid`, phone)
}

func (ix *index) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := ix.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// indexText is the text the index keeps for a JSON value: a string's
// contents, any other value's JSON text.
func indexText(raw json.RawMessage) string {
	if v := bytes.TrimSpace(raw); len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// byID returns the items whose id is in ids, in the order of ids.
func byID[T any](items []T, id func(T) string, ids []string) []T {
	at := make(map[string]T, len(items))
	for _, it := range items {
		at[id(it)] = it
	}
	out := make([]T, 0, len(ids))
	for _, i := range ids {
		if it, ok := at[i]; ok {
			out = append(out, it)
		}
	}
	return out
}
