-- Webhooks (internal/webhook). What is to be sent waits in the outbox,
-- written in the transaction of the change it reports where there is one,
-- so an instance that dies loses none; workers on every instance send it.

-- One row an event of a tenant's webhooks ({"name":…,"channel":…,…}, Pusher's
-- shape), sent in id order: the order per channel is the order of ids.
-- parked_at: given up on after the retry window; kept for "retry now".
CREATE TABLE webhook_outbox (
    id         bigserial   PRIMARY KEY,
    tenant_id  bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event      json        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    parked_at  timestamptz
);
CREATE INDEX webhook_outbox_waiting_idx ON webhook_outbox (tenant_id, id) WHERE parked_at IS NULL;

-- A tenant's queue: when its next batch is due ('infinity' when nothing
-- waits), and which worker holds it until when. A worker leases a queue in
-- a short transaction and posts outside any, so no transaction stays open
-- while an endpoint is slow; a lease that runs out (the worker died) lets
-- another take the queue. One queue per tenant: a tenant's batches go one
-- at a time, in order, and a dead endpoint holds up only its own tenant.
CREATE TABLE webhook_queues (
    tenant_id       bigint      PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    due_at          timestamptz NOT NULL,
    leased_until    timestamptz,
    attempts        int         NOT NULL DEFAULT 0, -- of the batch at the head, in a row
    first_failed_at timestamptz                     -- when the head batch first failed
);
CREATE INDEX webhook_queues_due_idx ON webhook_queues (due_at);

-- Every attempt, for the console and the API; the last few hundred a tenant.
CREATE TABLE webhook_deliveries (
    id            bigserial   PRIMARY KEY,
    tenant_id     bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    events        int         NOT NULL,
    first_id      bigint      NOT NULL, -- the outbox ids the batch held
    last_id       bigint      NOT NULL,
    status        int         NOT NULL, -- the HTTP status; 0 when there was none
    latency_ms    int         NOT NULL,
    error         text        NOT NULL DEFAULT '',
    attempt       int         NOT NULL,
    next_retry_at timestamptz,          -- null once delivered or parked
    outcome       text        NOT NULL  -- delivered, retrying, parked; test (the console's "send a test webhook")
);
CREATE INDEX webhook_deliveries_tenant_idx ON webhook_deliveries (tenant_id, id DESC);

-- Whatever writes outbox rows (Enqueue, the publisher storing a client
-- event), an idle queue of theirs becomes due after the batch window: the
-- first event waits a second for others to join its batch. A queue already
-- due, or waiting out a retry, keeps its time: a new event must not cut a
-- backoff short.
CREATE FUNCTION webhook_queue_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_queues (tenant_id, due_at)
    SELECT DISTINCT tenant_id, now() + interval '1 second' FROM new_rows ORDER BY tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET due_at = EXCLUDED.due_at
     WHERE webhook_queues.due_at = 'infinity';
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_outbox_due AFTER INSERT ON webhook_outbox
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_due();

-- The channels announced occupied to a tenant's webhook and not yet
-- vacated. empty_since: when the decider first found no subscriber left on
-- any live instance; the channel is vacated once that is older than the
-- grace period, and occupied again (no webhook) if one comes back first.
CREATE TABLE webhook_channels (
    tenant_id   bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel     text        NOT NULL,
    empty_since timestamptz,
    PRIMARY KEY (tenant_id, channel)
);
