-- The billing catalog (openmonetize/catalog.py): tenant settings, burn tables and provider
-- prices. Postgres is the source of truth; every write is also published to the compacted
-- billing.catalog topic, which the API and the stream workers read into memory.
-- Money is numeric, never float. Versions are immutable: a change is a new row.

CREATE TABLE tenant_settings (
    customer_id      text PRIMARY KEY REFERENCES customers (customer_id),
    credit_price_usd numeric(38, 12) NOT NULL DEFAULT 0.01 CHECK (credit_price_usd >= 0),
    routing_order    text[] NOT NULL DEFAULT '{user,team,customer}',
    unfunded_policy  text NOT NULL DEFAULT 'allow_overdraft' CHECK (unfunded_policy IN ('allow_overdraft', 'reject')),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per version of a burn table; `rules` holds every amount as a JSON string (exact).
CREATE TABLE burn_tables (
    burn_table_id  text NOT NULL,
    customer_id    text NOT NULL REFERENCES customers (customer_id),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    version        integer NOT NULL CHECK (version >= 1),
    effective_from timestamptz NOT NULL,
    rules          jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (burn_table_id, version)
);

CREATE INDEX burn_tables_customer_idx ON burn_tables (customer_id, burn_table_id);

-- USD prices per million tokens (and per image / per unit). customer_id NULL: the global
-- snapshot of the genai-prices dataset; a customer id: that tenant's override.
CREATE TABLE provider_prices (
    provider        text NOT NULL,
    model           text NOT NULL,
    version         text NOT NULL,
    effective_from  timestamptz NOT NULL,
    input_mtok      numeric(38, 12) CHECK (input_mtok >= 0),
    output_mtok     numeric(38, 12) CHECK (output_mtok >= 0),
    cache_read_mtok numeric(38, 12) CHECK (cache_read_mtok >= 0),
    per_image       numeric(38, 12) CHECK (per_image >= 0),
    per_unit        numeric(38, 12) CHECK (per_unit >= 0),
    customer_id     text REFERENCES customers (customer_id),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX provider_prices_version_idx
    ON provider_prices (coalesce(customer_id, ''), provider, model, version);
CREATE INDEX provider_prices_customer_idx ON provider_prices (customer_id) WHERE customer_id IS NOT NULL;
