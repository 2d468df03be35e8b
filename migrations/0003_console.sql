-- Console sessions, server-side: the cookie holds a random id whose SHA-256
-- is the key here, so a database dump does not yield usable sessions.
CREATE TABLE console_sessions (
    id_hash      bytea       PRIMARY KEY,
    tenant_id    bigint      REFERENCES tenants (id) ON DELETE CASCADE, -- NULL for the operator
    operator     boolean     NOT NULL DEFAULT false,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    CHECK (operator OR tenant_id IS NOT NULL)
);
CREATE INDEX console_sessions_last_seen_idx ON console_sessions (last_seen_at);
