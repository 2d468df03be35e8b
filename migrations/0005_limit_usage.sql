-- Limits that hold for a tenant (or an API key) as a whole, across instances.
-- Each instance writes here, every second, what it holds of each limited
-- scope (connections) and how much it was asked for (attempts per second),
-- and the share it reserves until its next sync, and reads what the other
-- live instances wrote, to work out its own share
-- of every limit (internal/limit). The rows say nothing that outlives the
-- instances that wrote them, so the table is not WAL-logged: a crash empties
-- it, and the next second refills it.
CREATE UNLOGGED TABLE limit_usage (
    instance_id text             NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    scope       text             NOT NULL, -- conn:<tenant>, pub:<tenant>, key:<api key id>
    held        bigint           NOT NULL, -- connections held now (0 for rates)
    demand      double precision NOT NULL, -- attempts per second over the last interval
    reserved    double precision NOT NULL, -- its share until its next sync: a rate, or the most connections it may hold
    PRIMARY KEY (instance_id, scope)
);
