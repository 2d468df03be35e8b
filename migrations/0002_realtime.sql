-- Events, idempotency keys, subscriber tickets, and the live-connection registry.

-- event_seq is the tenant's last event id. Publishing takes the next ids by
-- updating this row, whose lock is held until commit, so ids become visible
-- in order and a reader asking for "id > cursor" never skips a late commit.
-- pruned_seq is the highest id the retention job has deleted: a cursor below
-- it has lost events and gets `event: resync`.
ALTER TABLE tenants
    ADD COLUMN event_seq  bigint NOT NULL DEFAULT 0,
    ADD COLUMN pruned_seq bigint NOT NULL DEFAULT 0;

-- data is json, not jsonb: it is stored and delivered byte for byte as published
-- (compacted), keeping key order and duplicate keys.
CREATE TABLE events (
    tenant_id  bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         bigint      NOT NULL,
    channel    text        NOT NULL,
    type       text        NOT NULL,
    data       json        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_channel_idx ON events (tenant_id, channel, id);
CREATE INDEX events_created_idx ON events (created_at);

-- A publish with an Idempotency-Key records the request's hash and the ids it
-- got, so a retry within 24 h returns the same ids and publishes nothing.
CREATE TABLE idempotency_keys (
    tenant_id    bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    ids          bigint[],
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- A ticket stands in for a subscriber JWT in an EventSource URL. Only its
-- hash is stored. It must be first used within 60 s; after that, reconnects
-- may reuse it until the token it came from expires.
CREATE TABLE tickets (
    hash          bytea       PRIMARY KEY,
    tenant_id     bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kid           text        NOT NULL,
    subject       text        NOT NULL,
    channels      text[]      NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    first_used_at timestamptz
);
CREATE INDEX tickets_expires_idx ON tickets (expires_at);

-- Each running instance beats here; its connections count as live only while
-- the beat is recent, so a killed instance's clients vanish on their own.
CREATE TABLE instances (
    id           text        PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE connections (
    id           text        PRIMARY KEY,
    instance_id  text        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    tenant_id    bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subject      text        NOT NULL,
    channels     text[]      NOT NULL,
    transport    text        NOT NULL,
    remote_addr  text        NOT NULL,
    user_agent   text        NOT NULL,
    connected_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX connections_tenant_idx ON connections (tenant_id);
