package realtime

import (
	"context"
	"log/slog"
	"time"
)

// RunPruner deletes events older than retention every interval, in batches,
// until ctx ends. Several instances may run it at once: each batch deletes
// distinct rows, and a row one instance deletes the other simply skips.
func (s *Store) RunPruner(ctx context.Context, log *slog.Logger, retention, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := s.Prune(ctx, retention, 10000)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("realtime: pruning old events failed; will retry", "err", err)
		case n > 0:
			log.Info("realtime: pruned events older than retention", "events", n, "retention", retention.String())
		}
	}
}
