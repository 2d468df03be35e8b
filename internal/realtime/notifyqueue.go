package realtime

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// notifyQueueUsage mirrors pg_notification_queue_usage(). The queue is
// shared by the whole PostgreSQL cluster and only drains as fast as its
// slowest listening session; when it is full, every commit that NOTIFYs
// fails (SQLSTATE 54000) and publishes get 503. Alert well before that.
var notifyQueueUsage = promauto.NewGauge(prometheus.GaugeOpts{
	Name: "hybridrt_notify_queue_usage",
	Help: "Fraction (0-1) of PostgreSQL's NOTIFY queue in use, as pg_notification_queue_usage() reports it. " +
		"Above 0.1 a listening session somewhere is not consuming notifications (often one idle in a long transaction).",
})

// QueueWatch configures WatchNotifyQueue. The zero value means the defaults.
type QueueWatch struct {
	Every     time.Duration // how often to sample; default 15 s
	WarnAbove float64       // log a warning when usage is above this; default 0.1
}

// WatchNotifyQueue samples the NOTIFY queue's usage into
// hybridrt_notify_queue_usage until ctx ends, and logs a warning whenever it
// is above the threshold. One cheap query per interval; a failed sample is
// skipped (the database being down is reported elsewhere).
func WatchNotifyQueue(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, w QueueWatch) error {
	if w.Every <= 0 {
		w.Every = 15 * time.Second
	}
	if w.WarnAbove <= 0 {
		w.WarnAbove = 0.1
	}
	tick := time.NewTicker(w.Every)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var usage float64
		err := pool.QueryRow(qctx, `SELECT pg_notification_queue_usage()`).Scan(&usage)
		cancel()
		if err == nil {
			notifyQueueUsage.Set(usage)
			if usage > w.WarnAbove {
				log.Warn("realtime: PostgreSQL's NOTIFY queue is filling up; publishes will fail with 503 when it is full. "+
					"Look for a session that LISTENs and stays idle in a transaction (pg_stat_activity)",
					"usage", usage, "threshold", w.WarnAbove)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
