package whitelist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/quote"
)

// Errors the admin commands report as such.
var (
	ErrExists   = errors.New("whitelist: entry already exists")
	ErrNotFound = errors.New("whitelist: no such entry")
	// ErrInvalid matches every refusal of what the caller wrote: a kind,
	// a value, a comment, a creator, an expiry, a format or a line of an
	// imported list. Nothing was written. A failure of the database never
	// matches it.
	ErrInvalid = errors.New("whitelist: invalid entry")
)

// invalidError carries a refusal worded for the admin; it matches
// ErrInvalid without adding ErrInvalid's text to the message.
type invalidError struct{ error }

func (e invalidError) Is(target error) bool { return target == ErrInvalid }
func (e invalidError) Unwrap() error        { return e.error }

// maxCommentLen keeps a pasted file out of a comment column.
const maxCommentLen = 1000

// Store keeps whitelist entries in the database (tables from the 0002
// migration). It serves the admin commands and the daemon's refresh.
type Store struct {
	db      *db.DB
	dialect sqlDialect
	now     func() time.Time
}

// NewStore returns a store on d. now stamps created_at and decides what
// has expired; nil means time.Now.
func NewStore(d *db.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: d, dialect: newDialect(d), now: now}
}

// Filter selects entries for List; the zero Filter lists every live entry.
type Filter struct {
	Kind    Kind   // "" for every kind
	Value   string // substring of the value, case-insensitive; "" for any
	Expired bool   // include entries that have expired
}

// ImportOptions describe one Import.
type ImportOptions struct {
	Format    Format
	Name      string // file name, for error messages ("stdin" if empty)
	Comment   string // added to each entry's comment from the file
	CreatedBy string
	Expires   time.Time // zero: never
}

// ImportResult counts what an Import did.
type ImportResult struct {
	Added    int // new entries
	Existing int // entries already in the database, left unchanged
}

// validate checks e and fills its canonical value. Nothing is written when
// it fails, so a typo never half-applies. Every error matches ErrInvalid.
func (s *Store) validate(e *Entry) error {
	k, err := ParseKind(string(e.Kind))
	if err != nil {
		return err
	}
	p, err := parseValue(k, e.Value)
	if err != nil {
		return invalidError{fmt.Errorf("whitelist: bad %s value: %w", k, err)}
	}
	if err := checkMeta("comment", e.Comment); err != nil {
		return err
	}
	if err := checkMeta("creator", e.CreatedBy); err != nil {
		return err
	}
	if !e.Expires.IsZero() && !e.Expires.After(s.now()) {
		return invalidError{fmt.Errorf("whitelist: expiry %s is not in the future", e.Expires.Format(time.RFC3339))}
	}
	e.Kind, e.Value, e.pat = k, p.key, p
	return nil
}

// checkMeta checks a comment or creator: printable, and short enough for
// a column of `whitelist list`.
func checkMeta(what, v string) error {
	if len(v) > maxCommentLen {
		return invalidError{fmt.Errorf("whitelist: %s %s is %d bytes long, at most %d", what, quote.Short(v), len(v), maxCommentLen)}
	}
	if err := checkText(v); err != nil {
		return invalidError{fmt.Errorf("whitelist: %s %s: %w", what, quote.Short(v), err)}
	}
	return nil
}

// Add stores one entry and returns it as stored (canonical value, id).
// An entry with the same kind and value fails with ErrExists: changing its
// comment or expiry is a remove and an add, made on purpose.
func (s *Store) Add(ctx context.Context, e Entry) (Entry, error) {
	if err := s.validate(&e); err != nil {
		return Entry{}, err
	}
	e.CreatedAt = s.now().Truncate(time.Second)
	e.Source = sourceDB
	err := s.inTx(ctx, func(x execer) error {
		added, err := x.insert(ctx, &e)
		if err == nil && !added {
			err = fmt.Errorf("%w: %s %s", ErrExists, e.Kind, e.Value)
		}
		return err
	})
	if err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Remove deletes the entry of kind k whose value is value (in any form
// that normalizes to the stored one). A value the rules now refuse (a row
// stored before a rule, or by hand) is removed as written; if there is no
// such row, the refusal is the error. A valid value stored by hand in a
// form of its own (Mail.Example.COM) is removed as written too, when no
// row holds the normalized form.
func (s *Store) Remove(ctx context.Context, k Kind, value string) error {
	e := Entry{Kind: k, Value: value}
	invalid := s.validate(&e)
	if invalid != nil {
		kind, err := ParseKind(string(k))
		if err != nil {
			return err
		}
		e.Kind, e.Value = kind, strings.TrimSpace(value)
	}
	err := s.inTx(ctx, func(x execer) error {
		n, err := x.remove(ctx, e.Kind, e.Value)
		if raw := strings.TrimSpace(value); err == nil && n == 0 && raw != e.Value {
			n, err = x.remove(ctx, e.Kind, raw)
		}
		if err == nil && n == 0 {
			err = ErrNotFound // roll back: PostgreSQL's trigger bumps the version per statement
		}
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound) && invalid != nil:
		return invalid
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: %s %s", ErrNotFound, e.Kind, e.Value)
	}
	return err
}

// Import adds every entry of a list file in one transaction: a bad line
// fails the whole import and changes nothing. Entries already present are
// counted and left as they are. A bad line or option matches ErrInvalid;
// a failure to read r does not.
func (s *Store) Import(ctx context.Context, r io.Reader, opt ImportOptions) (ImportResult, error) {
	var res ImportResult
	list, err := s.readImport(r, opt)
	if err != nil {
		return res, err
	}
	err = s.inTx(ctx, func(x execer) error {
		res = ImportResult{}
		for i := range list {
			added, err := x.insert(ctx, &list[i])
			if err != nil {
				return fmt.Errorf("%s: %w", list[i].Source, err)
			}
			if added {
				res.Added++
			} else {
				res.Existing++
			}
		}
		return nil
	})
	return res, err
}

// readImport parses and validates every line Import would write.
func (s *Store) readImport(r io.Reader, opt ImportOptions) ([]Entry, error) {
	if opt.Name == "" {
		opt.Name = "stdin"
	}
	f, err := ParseFormat(string(opt.Format))
	if err != nil {
		return nil, invalidError{err}
	}
	in := &readRecorder{r: r}
	list, err := parseList(in, opt.Name, f)
	switch {
	case err != nil && in.err != nil:
		return nil, err // the reader failed, not the admin's text
	case err != nil:
		return nil, invalidError{err}
	}
	for i := range list {
		e := &list[i]
		e.Comment = joinComment(opt.Comment, e.Comment)
		e.CreatedBy, e.Expires = opt.CreatedBy, opt.Expires
		if err := s.validate(e); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Source, err)
		}
		e.CreatedAt = s.now().Truncate(time.Second)
	}
	return list, nil
}

// readRecorder remembers the error its reader failed with, other than
// io.EOF: an I/O failure, which parseList reports like a bad line.
type readRecorder struct {
	r   io.Reader
	err error
}

func (rr *readRecorder) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil && err != io.EOF {
		rr.err = err
	}
	return n, err
}

func joinComment(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}

// List returns the entries f selects, ordered by kind and value.
func (s *Store) List(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Kind != "" {
		k, err := ParseKind(string(f.Kind))
		if err != nil {
			return nil, err
		}
		f.Kind = k
	}
	all, err := s.load(ctx, f.Expired)
	if err != nil {
		return nil, err
	}
	needle := strings.ToLower(f.Value)
	return slices.DeleteFunc(all, func(e Entry) bool {
		return f.Kind != "" && e.Kind != f.Kind ||
			needle != "" && !strings.Contains(strings.ToLower(e.Value), needle)
	}), nil
}

// Purge deletes entries that expired before now, for the gc command.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(x execer) error {
		var err error
		n, err = x.purge(ctx, s.now())
		return err
	})
	return n, err
}

// Expired counts the entries Purge would delete now: gc's dry run.
func (s *Store) Expired(ctx context.Context) (int64, error) {
	return s.dialect.expired(ctx, s.now())
}

// Version returns the change counter the triggers bump; a daemon reloads
// the table when it differs from the one it loaded.
func (s *Store) Version(ctx context.Context) (int64, error) {
	v, err := s.dialect.version(ctx)
	if err != nil {
		return 0, fmt.Errorf("whitelist: read version: %w", err)
	}
	return v, nil
}

// sourceDB marks entries that came from the database.
const sourceDB = "database"

// load reads the entries, the expired ones only if asked. A row that no
// longer parses (edited by hand) is skipped by the caller's rebuild, not
// fatal: one bad row must not disable the whole whitelist.
func (s *Store) load(ctx context.Context, expired bool) ([]Entry, error) {
	now := s.now()
	if expired {
		now = time.Time{}
	}
	out, err := s.dialect.load(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("whitelist: load entries: %w", err)
	}
	return out, nil
}

// inTx runs fn in one transaction, committed only if fn succeeds. An
// outcome fn reports to roll back (ErrExists, ErrNotFound) already names
// the package and comes back as it is; the database's errors get the
// prefix.
func (s *Store) inTx(ctx context.Context, fn func(execer) error) error {
	err := s.dialect.inTx(ctx, fn)
	if err == nil || errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("whitelist: %w", err)
}
