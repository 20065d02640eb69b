package whitelist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Name is the check's name in the config, the logs and the metrics.
const Name = "whitelist"

// Options are a Checker's collaborators.
type Options struct {
	Store  *Store // database entries; nil for files and defaults only
	Logger *slog.Logger
}

// Checker is the "whitelist" check: it matches requests against an
// in-memory snapshot of the role recipients, the files and the database
// entries. Reload re-reads the files (SIGHUP); Run keeps the database part
// fresh. Matching never touches the database.
type Checker struct {
	store *Store
	log   *slog.Logger
	every time.Duration // poll interval, fixed at New

	mu      sync.Mutex // serializes rebuilds; readers use ix only
	cfg     Config
	roles   []Entry
	files   []Entry
	db      []Entry
	version int64
	loaded  bool // db holds the table at version
	failing bool // the last refresh failed (log once per outage)

	ix atomic.Pointer[index]
}

// New reads the configured files and, with a store, the database entries.
// A bad file is an error. An unreachable database is not: the daemon
// starts with its files and Run retries, because whitelists exempt mail
// and their absence only makes mxpolicyd stricter for a while.
func New(ctx context.Context, cfg Config, opt Options) (*Checker, error) {
	w := &Checker{store: opt.Store, log: opt.Logger, every: cfg.Refresh}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if err := w.Reconfigure(cfg); err != nil {
		return nil, err
	}
	if w.store != nil {
		if err := w.Refresh(ctx); err != nil {
			w.log.Warn("whitelist: database entries not loaded yet; retrying", "err", err)
			w.failing = true // Run logs when it works, not the same failure again
		}
	}
	return w, nil
}

// Reload re-reads every configured file (SIGHUP). If any file is bad, the
// lists in use stay as they were and the error names each bad file:line.
func (w *Checker) Reload() error {
	w.mu.Lock()
	cfg := w.cfg
	w.mu.Unlock()
	return w.Reconfigure(cfg)
}

// Reconfigure switches to cfg's files and role recipients, for a reload
// that changed the config; on any error nothing changes. The refresh
// interval is fixed at New: Run's ticker keeps it.
func (w *Checker) Reconfigure(cfg Config) error {
	apply, err := w.Prepare(cfg)
	if err != nil {
		return err
	}
	apply()
	return nil
}

// Prepare reads cfg's files and role recipients and returns the function
// that switches the checker to them. Nothing changes until apply runs, so
// a reload that fails later, at another check, keeps the lists in use; on
// error nothing changes at all.
func (w *Checker) Prepare(cfg Config) (apply func(), err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	roles, err := cfg.roleEntries()
	if err != nil {
		return nil, err
	}
	files, err := readFiles(cfg)
	if err != nil {
		return nil, err
	}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.cfg, w.roles, w.files = cfg, roles, files
		w.rebuild()
		w.log.Info("whitelist files loaded", "entries", len(files))
	}, nil
}

// readFiles reads every file cfg names, reporting all bad ones at once.
func readFiles(cfg Config) ([]Entry, error) {
	var (
		all  []Entry
		errs []error
	)
	for _, src := range fileSources(cfg) {
		for _, path := range src.paths {
			list, err := readFile(path, src.format)
			errs = append(errs, err)
			all = append(all, list...)
		}
	}
	return all, errors.Join(errs...)
}

type fileSource struct {
	paths  []string
	format Format
}

func fileSources(cfg Config) []fileSource {
	return []fileSource{
		{cfg.ClientsFiles, FormatClients},
		{cfg.RecipientsFiles, FormatRecipients},
		{cfg.SendersFiles, FormatSenders},
	}
}

// refreshTimeout bounds one poll, so a hung database never stacks polls.
const refreshTimeout = 5 * time.Second

// Refresh reloads the database entries if the change counter moved since
// the last load. It costs one single-row read when nothing changed. The
// counter is read before the rows: a change racing with the load then moves
// the counter past what was loaded and is picked up by the next poll.
func (w *Checker) Refresh(ctx context.Context) error {
	if w.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	v, err := w.store.Version(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	same := w.loaded && v == w.version
	w.mu.Unlock()
	if same {
		return nil
	}
	rows, err := w.store.load(ctx, false)
	if err != nil {
		return err
	}
	list := w.parseRows(rows)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.db, w.version, w.loaded = list, v, true
	w.rebuild()
	w.log.Debug("whitelist database entries loaded", "entries", len(list), "version", v)
	return nil
}

// parseRows keeps the rows that parse. The admin commands only write
// canonical values, so a bad row was edited by hand: it is logged and
// skipped rather than disabling every other entry.
func (w *Checker) parseRows(rows []Entry) []Entry {
	out := rows[:0]
	for _, e := range rows {
		p, err := parseValue(e.Kind, e.Value)
		if err != nil {
			w.log.Warn("whitelist: skipping bad database row", "id", e.ID, "kind", string(e.Kind), "err", err)
			continue
		}
		e.pat = p
		out = append(out, e)
	}
	return out
}

// rebuild swaps in a new snapshot; w.mu must be held. Role recipients come
// first so that they win over a plain recipient entry for the same address.
func (w *Checker) rebuild() {
	w.ix.Store(newIndex(w.roles, w.files, w.db))
}

// Run polls the database every cfg.Refresh until ctx ends. Failures keep
// the last snapshot and are logged once per outage, not once a second.
func (w *Checker) Run(ctx context.Context) error {
	if w.store == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			// The rows are operators' values, parsed and compiled here.
			w.noteRefresh(panics.Call(func() error { return w.Refresh(ctx) }))
		}
	}
}

func (w *Checker) noteRefresh(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil && !w.failing:
		w.log.Warn("whitelist: refresh failed; keeping the entries loaded before", "err", err)
	case err == nil && w.failing:
		w.log.Info("whitelist: refresh works again")
	}
	w.failing = err != nil
}

// Len is the number of entries in the snapshot, for metrics.
func (w *Checker) Len() int { return w.ix.Load().size }

// Match returns what req matches at now; no entries means no match.
func (w *Checker) Match(req *policy.Request, now time.Time) Match {
	return w.ix.Load().match(req, now)
}

// Name implements policy.Check.
func (w *Checker) Name() string { return Name }

// Check implements policy.Check: on a match it records the exempted checks
// in Facts.Skip and the entries in Facts.Whitelist, and passes (DUNNO);
// it never accepts mail itself, so Postfix's later restrictions still apply.
func (w *Checker) Check(_ context.Context, st *policy.State) (policy.Result, error) {
	res, _ := w.Quick(st)
	return res, nil
}

// CheckEndOfMessage implements policy.EndOfMessageCheck: a client the
// whitelist exempts from every check is exempt at END-OF-MESSAGE too,
// where a byte quota would otherwise still count its mail.
func (w *Checker) CheckEndOfMessage(ctx context.Context, st *policy.State) (policy.Result, error) {
	return w.Check(ctx, st)
}

var _ policy.EndOfMessageCheck = (*Checker)(nil)

// Quick implements policy.QuickCheck: the entries are in memory, so the
// whitelist always decides there.
func (w *Checker) Quick(st *policy.State) (policy.Result, bool) {
	m := w.Match(st.Req, st.Now)
	if len(m.Entries) == 0 {
		return policy.Pass(""), true
	}
	st.Facts.Skip = st.Facts.Skip.With(slices.Sorted(maps.Keys(m.Skip))...)
	st.Facts.Whitelist = m.String()
	return policy.Pass(fmt.Sprintf("whitelisted: %s", m)), true
}
