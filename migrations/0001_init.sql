-- Tenants, their API keys (for publishers) and signing keys (for subscriber JWTs).

CREATE TABLE tenants (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL,
    settings   jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- An API key is "hrt_" + prefix + "_" + secret + checksum. The prefix finds the row;
-- only the SHA-256 of the secret is stored.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    prefix       text        NOT NULL UNIQUE,
    secret_hash  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id) WHERE revoked_at IS NULL;

-- A signing key's secret is stored sealed (AES-256-GCM under a key derived from
-- SECRET_KEY), so a database dump alone does not reveal it. kid is global, so the
-- tenant is found from the key, never from a token's unverified claims.
CREATE TABLE signing_keys (
    kid         text        PRIMARY KEY,
    tenant_id   bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret_seal bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX signing_keys_tenant_idx ON signing_keys (tenant_id) WHERE revoked_at IS NULL;
