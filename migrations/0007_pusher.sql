-- The Pusher protocol door (internal/pusher) and presence (internal/presence).

-- The connection that must not receive an event live: the sender of a client
-- event, or the socket_id a Pusher trigger excludes. NULL for most events.
ALTER TABLE events ADD COLUMN origin text;
-- The user who sent a client event on a presence channel (Pusher's user_id).
ALTER TABLE events ADD COLUMN sender text;

-- Who is in each presence channel: one row per connection, so a user with
-- several connections is one member until the last of them leaves. Rows of an
-- instance that stopped beating are swept, and their members announced as
-- removed, by any live instance.
CREATE TABLE presence_members (
    tenant_id   bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel     text        NOT NULL,
    conn_id     text        NOT NULL,
    instance_id text        NOT NULL,
    user_id     text        NOT NULL,
    user_info   json,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, conn_id)
);
CREATE INDEX presence_members_user_idx ON presence_members (tenant_id, channel, user_id);
CREATE INDEX presence_members_instance_idx ON presence_members (instance_id);

-- A presence channel's version: bumped, under this row's lock, by every join
-- of a new member and every leave of a last connection, and carried by the
-- notification that announces it. An instance that sees a version jump knows
-- it missed a change and reads the members again.
CREATE TABLE presence_channels (
    tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel   text   NOT NULL,
    version   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, channel)
);

-- Each instance takes a number at start: Pusher socket ids are
-- <number>.<counter>, unique across the instances sharing this database.
CREATE SEQUENCE pusher_socket_prefix;

-- When an instance last wrote its usage of a shared limit (internal/limit).
-- Others stop counting a report a few seconds old, so a killed instance's
-- share is free for its clients reconnecting elsewhere long before its
-- heartbeat is declared dead (20 s).
ALTER TABLE limit_usage ADD COLUMN synced_at timestamptz NOT NULL DEFAULT now();
