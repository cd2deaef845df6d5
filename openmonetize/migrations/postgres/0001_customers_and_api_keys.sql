-- Tenants (our customers) and their API keys. Keys are stored as SHA-256 hashes: a key is a
-- 256-bit random secret, so a fast hash is enough; the plain key is shown once at creation.
CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers (customer_id),
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    name         text NOT NULL DEFAULT 'default',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE INDEX api_keys_customer_idx ON api_keys (customer_id);
