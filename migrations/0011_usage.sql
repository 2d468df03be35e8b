-- Usage over time (internal/usage): per tenant per minute, kept 48 hours,
-- and per tenant per UTC day, kept 400 days. Minute rows are added to by
-- every instance's periodic flush of what it counted; day rows are
-- recomputed whole from the minute rows of their day (today and
-- yesterday, whose minutes are all still kept), so recomputing twice
-- never counts twice.

-- usage_jsonb_add adds two {"reason": count} objects key by key.
CREATE FUNCTION usage_jsonb_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
        SELECT k, sum(v::bigint) AS v
          FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}')) UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{}'))) AS e (k, v)
         GROUP BY k) AS s
$$;
CREATE AGGREGATE usage_jsonb_sum(jsonb) (SFUNC = usage_jsonb_add, STYPE = jsonb, INITCOND = '{}');

CREATE TABLE usage_minutes (
    tenant_id        bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    minute           timestamptz NOT NULL,
    published_api    bigint      NOT NULL DEFAULT 0, -- events stored through the HTTP API and the console
    published_pusher bigint      NOT NULL DEFAULT 0, -- events stored through Pusher's HTTP API
    published_client bigint      NOT NULL DEFAULT 0, -- client events, on every transport
    deliveries       bigint      NOT NULL DEFAULT 0, -- events written to subscribers
    bytes_delivered  bigint      NOT NULL DEFAULT 0, -- their bytes on the wire, framing included
    webhooks_sent    bigint      NOT NULL DEFAULT 0, -- webhook events acknowledged by the endpoint
    webhooks_failed  bigint      NOT NULL DEFAULT 0, -- failed webhook POSTs
    peak_sse         int         NOT NULL DEFAULT 0, -- the most connections at once, by transport,
    peak_websocket   int         NOT NULL DEFAULT 0, -- across every instance, as sampled
    peak_pusher      int         NOT NULL DEFAULT 0,
    peak_polling     int         NOT NULL DEFAULT 0,
    peak_total       int         NOT NULL DEFAULT 0,
    rejected         jsonb       NOT NULL DEFAULT '{}', -- refused requests by reason
    PRIMARY KEY (tenant_id, minute)
);
CREATE INDEX usage_minutes_minute_idx ON usage_minutes (minute);

CREATE TABLE usage_days (
    tenant_id        bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day              date   NOT NULL, -- UTC
    published_api    bigint NOT NULL DEFAULT 0,
    published_pusher bigint NOT NULL DEFAULT 0,
    published_client bigint NOT NULL DEFAULT 0,
    deliveries       bigint NOT NULL DEFAULT 0,
    bytes_delivered  bigint NOT NULL DEFAULT 0,
    webhooks_sent    bigint NOT NULL DEFAULT 0,
    webhooks_failed  bigint NOT NULL DEFAULT 0,
    peak_sse         int    NOT NULL DEFAULT 0,
    peak_websocket   int    NOT NULL DEFAULT 0,
    peak_pusher      int    NOT NULL DEFAULT 0,
    peak_polling     int    NOT NULL DEFAULT 0,
    peak_total       int    NOT NULL DEFAULT 0,
    rejected         jsonb  NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, day)
);
CREATE INDEX usage_days_day_idx ON usage_days (day);
