-- Tenant status: the operator may suspend a tenant. While suspended_at is set,
-- its API keys, subscriber tokens and tickets are refused with 403
-- tenant_suspended and its open streams are closed on every instance. Nothing
-- is deleted, so resuming (setting it back to NULL) restores everything.
ALTER TABLE tenants ADD COLUMN suspended_at timestamptz;

-- Every instance re-reads the suspended tenants each second: keep that read
-- to the few suspended rows.
CREATE INDEX tenants_suspended_idx ON tenants (id) WHERE suspended_at IS NOT NULL;
