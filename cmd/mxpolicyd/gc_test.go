package main

import (
	"slices"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/replies"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

// gc removes the reply pairs unseen for greylist.max_age, and keeps the
// fresh ones; a dry run only counts.
func TestGCRemovesOldReplies(t *testing.T) {
	cfg, err := config.Load("", checkDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	s := replies.NewStore(d)
	old := replies.Pair{Local: "alice@example.org", Outside: "bob@example.net", OutsideDomain: "example.net"}
	fresh := replies.Pair{Local: "alice@example.org", Outside: "carol@example.net", OutsideDomain: "example.net"}
	now := time.Now()
	for p, at := range map[replies.Pair]time.Time{old: now.Add(-cfg.Greylist.MaxAge - time.Hour), fresh: now} {
		if err := s.Record(ctx, at, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, dry := range []bool{true, false} {
		res, err := collectGarbage(ctx, cfg, d, dry)
		if err != nil {
			t.Fatal(err)
		}
		if res.replies != 1 {
			t.Errorf("dry run %v: %d reply pairs, want 1", dry, res.replies)
		}
	}
	// The real run deleted the old pair: nothing is left to count.
	if res, err := collectGarbage(ctx, cfg, d, true); err != nil || res.replies != 0 {
		t.Errorf("after gc: %d reply pairs left to remove (err %v), want 0", res.replies, err)
	}
	hit, err := s.Match(ctx, now.Add(-time.Minute), fresh, false)
	if err != nil {
		t.Fatal(err)
	}
	if !hit {
		t.Error("gc removed a fresh pair")
	}
}

// On PostgreSQL gc indexes the ended days by client, after the prune: a
// day the prune drops is never indexed, and a dry run, which drops
// nothing, does not list it either.
func TestGCIndexesEndedDaysItKeeps(t *testing.T) {
	cfg, err := config.Load("", checkDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	now := time.Now()
	var old, yesterday string
	for _, p := range []struct {
		at   time.Time
		name *string
	}{{now.Add(-cfg.DecisionLog.Retention - 48*time.Hour), &old}, {now.AddDate(0, 0, -1), &yesterday}} {
		created, err := decisionlog.EnsurePartitions(ctx, d, p.at, 0)
		if err != nil || len(created) != 1 {
			t.Fatalf("partition of %v: %v, %v", p.at, created, err)
		}
		*p.name = created[0]
	}
	for _, dry := range []bool{true, false} {
		res, err := collectGarbage(ctx, cfg, d, dry)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.decisions.Partitions, []string{old}) || !slices.Equal(res.indexed, []string{yesterday}) {
			t.Errorf("dry run %v: dropped %v, indexed %v; want %s dropped, %s indexed",
				dry, res.decisions.Partitions, res.indexed, old, yesterday)
		}
	}
}

// gc --dry-run counts the expired whitelist entries the real run removes.
func TestGCDryRunCountsExpiredWhitelist(t *testing.T) {
	cfg, err := config.Load("", checkDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		past := time.Now().Add(-48 * time.Hour)
		s := whitelist.NewStore(d, func() time.Time { return past })
		if _, err := s.Add(ctx, whitelist.Entry{Kind: whitelist.Client, Value: "192.0.2.7", Expires: past.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		dry, err := collectGarbage(ctx, cfg, d, true)
		if err != nil {
			t.Fatal(err)
		}
		done, err := collectGarbage(ctx, cfg, d, false)
		if err != nil {
			t.Fatal(err)
		}
		again, err := collectGarbage(ctx, cfg, d, true)
		if err != nil {
			t.Fatal(err)
		}
		if dry.whitelist != 1 || done.whitelist != 1 || again.whitelist != 0 {
			t.Errorf("expired whitelist entries: the dry run counted %d, the run removed %d, a dry run after it %d; want 1, 1, 0",
				dry.whitelist, done.whitelist, again.whitelist)
		}
	})
}
