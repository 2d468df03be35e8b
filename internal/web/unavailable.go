package web

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable returns a 503 problem with Retry-After when err means the
// database cannot serve right now (down, restarting, read-only, out of
// connections or NOTIFY queue), so clients retry instead of seeing a 500.
// Any other error is returned unchanged, for Fail to answer with a 500.
func Unavailable(err error) error {
	if err == nil || !transient(err) {
		return err
	}
	detail := "the service cannot reach its database right now; nothing was changed, retry shortly"
	if e, ok := errors.AsType[*pgconn.PgError](err); ok && e.Code == "25006" {
		// Same code (clients just retry), but operators reading the answer
		// learn the database is up and refusing writes, not down.
		detail = "the database is read-only right now (a standby, or a failover in progress); nothing was changed, retry shortly"
	}
	p := NewProblem(http.StatusServiceUnavailable, "unavailable", detail).WithHeader("Retry-After", "1")
	p.cause = err
	return p
}

func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if e, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case e.Code[:2] == "08", // connection exception
			e.Code == "57P01", e.Code == "57P02", e.Code == "57P03", // shutdown, crash, cannot connect now
			e.Code == "53300",                    // too many connections
			e.Code == "25006",                    // read-only transaction: a standby after failover
			e.Code == "54000",                    // program limit, e.g. the NOTIFY queue is full
			e.Code == "40001", e.Code == "40P01": // serialization failure, deadlock
			return true
		}
	}
	// A connection closed under a query (the server went away mid-statement).
	return isClosedConn(err)
}

func isClosedConn(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case "conn closed", "closed pool", "unexpected EOF":
			return true
		}
	}
	return errors.Is(err, net.ErrClosed)
}
