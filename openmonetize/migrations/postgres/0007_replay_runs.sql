-- Rebilling runs (`openmonetize replay`, POST /v1/rebilling/runs; openmonetize/rebilling/).
--
-- replay_runs: one row per run, dry or applied: who asked, when, the range and selection, the
-- totals and the status. `commands_from` holds the end offsets of wallet.commands taken before
-- the run produced its first adjustment: where a resume looks for the adjustments it had sent.
--
-- replay_adjustments: every adjustment a run decided to book, written BEFORE its command is
-- produced to wallet.commands. `entry_id` is the ledger entry the wallet agent will make of it
-- (deterministic from the command id), so "landed" is a join with ledger_entries; a row whose
-- entry never lands and whose command is not on wallet.commands was never sent and is dropped
-- by the resume (openmonetize/rebilling/booking.py).
CREATE TABLE replay_runs (
    run_id             text PRIMARY KEY CHECK (run_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    customer_id        text NOT NULL,
    user_ids           text[] NOT NULL DEFAULT '{}',  -- empty: every user of the tenant
    range_from         timestamptz NOT NULL,
    range_to           timestamptz NOT NULL CHECK (range_to > range_from),
    burn_table_version integer,  -- NULL: the versions in force now at each event's time
    mode               text NOT NULL CHECK (mode IN ('dry_run', 'apply')),
    rebuild_analytics  boolean NOT NULL DEFAULT false,
    status             text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted')),
    requested_by       text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    commands_from      jsonb,
    events             bigint NOT NULL DEFAULT 0,  -- distinct events of the selection in the range
    duplicates         bigint NOT NULL DEFAULT 0,  -- later copies of an event (same body): never charged
    conflicts          bigint NOT NULL DEFAULT 0,  -- later copies with another body: never charged
    uncharged          bigint NOT NULL DEFAULT 0,  -- events with no usage_debit in the ledger (refused, in flight)
    unrateable         bigint NOT NULL DEFAULT 0,  -- events the burn table cannot rate now: left as charged
    adjusted           bigint NOT NULL DEFAULT 0,  -- events whose charge differs from the re-rating
    charged            numeric(38, 12) NOT NULL DEFAULT 0,  -- net credits the ledger held for them before the run
    rerated            numeric(38, 12) NOT NULL DEFAULT 0,
    difference         numeric(38, 12) NOT NULL DEFAULT 0,  -- rerated - charged: > 0 is an extra debit
    rewritten_events   bigint NOT NULL DEFAULT 0,  -- ClickHouse rows rewritten (--rebuild-analytics)
    per_user           jsonb NOT NULL DEFAULT '[]',
    elapsed_s          double precision,
    error              text
);

CREATE INDEX replay_runs_customer ON replay_runs (customer_id, created_at DESC);

CREATE TABLE replay_adjustments (
    entry_id    text PRIMARY KEY,
    run_id      text NOT NULL REFERENCES replay_runs (run_id),
    command_id  text NOT NULL UNIQUE,
    customer_id text NOT NULL,
    event_id    text NOT NULL,
    wallet_id   text NOT NULL,
    amount      numeric(38, 12) NOT NULL CHECK (amount <> 0),  -- signed as in the ledger: > 0 credits back
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX replay_adjustments_run ON replay_adjustments (run_id);
CREATE INDEX replay_adjustments_customer ON replay_adjustments (customer_id);
