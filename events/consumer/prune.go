package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/db"
)

const (
	// pruneFirst and pruneInterval: when Run first prunes, and how often
	// after that.
	pruneFirst    = time.Minute
	pruneInterval = time.Hour
	// pruneChunk bounds one DELETE, so that none holds many row locks.
	pruneChunk = 1000
)

// Pruned reports what one Prune deleted.
type Pruned struct {
	// Retention is the inbox retention it applied (zero: keep everything,
	// and nothing was deleted).
	Retention time.Duration
	// Inbox and Sequences count the inbox rows and the idle aggregates'
	// rows deleted.
	Inbox, Sequences int64
}

// Prune deletes the consumer's inbox rows taken longer ago than its inbox
// retention (Config.InboxRetention), and the rows of aggregates it last
// moved that long ago, a chunk at a time. No copy of those events can
// come back: the stream has dropped them, so no replay or redrive can
// copy them any more (a redrive of a dead letter whose copy has aged out
// copies the original, from the stream), and the redrive stream, where
// the copies made before wait, has dropped those. Run calls it every
// hour; another process may call it too.
func (c *Consumer) Prune(ctx context.Context) (Pruned, error) {
	var p Pruned
	keep, err := c.inboxRetention(ctx)
	if err != nil || keep <= 0 {
		return p, err
	}
	p.Retention = keep
	before := time.Now().Add(-keep)
	q := db.New(c.cfg.DB)
	for {
		n, err := q.DeleteOldInbox(ctx, db.DeleteOldInboxParams{Consumer: c.cfg.Name, Before: before, MaxRows: pruneChunk})
		p.Inbox += n
		if err != nil {
			return p, fmt.Errorf("consumer %s: prune inbox: %w", c.cfg.Name, err)
		}
		if n < pruneChunk {
			break
		}
	}
	for {
		n, err := q.DeleteIdleInboxSequences(ctx, db.DeleteIdleInboxSequencesParams{Consumer: c.cfg.Name, Before: before, MaxRows: pruneChunk})
		p.Sequences += n
		if err != nil {
			return p, fmt.Errorf("consumer %s: prune aggregate sequences: %w", c.cfg.Name, err)
		}
		if n < pruneChunk {
			break
		}
	}
	return p, nil
}

// inboxRetention is Config.InboxRetention, or when zero the one derived
// from the streams; zero means keep everything.
func (c *Consumer) inboxRetention(ctx context.Context) (time.Duration, error) {
	switch {
	case c.cfg.InboxRetention < 0:
		return 0, nil
	case c.cfg.InboxRetention > 0:
		return c.cfg.InboxRetention, nil
	}
	s, err := c.cfg.JetStream.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("consumer %s: read stream %s: %w", c.cfg.Name, c.cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer %s: read stream %s: %w", c.cfg.Name, c.cfg.Stream, err)
	}
	if info.Config.MaxAge <= 0 {
		return 0, nil
	}
	return info.Config.MaxAge + redriveMaxAge + 24*time.Hour, nil
}

// pruneEvery prunes first after first, then every interval, until ctx is
// done, logging what it deleted and any failure (retried at the next).
func (c *Consumer) pruneEvery(ctx context.Context, first, interval time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := c.Prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn("inbox pruning failed; retrying later", "err", err, "retry_in", interval)
		case p.Inbox+p.Sequences > 0:
			c.log.Info("inbox pruned", "retention", p.Retention, "inbox_rows", p.Inbox, "aggregates", p.Sequences)
		}
		t.Reset(interval)
	}
}
