-- The financial ledger: one row per money movement on a wallet, written by the ledger sink
-- (sinks/ledger_postgres.py) from ledger.entries. Append-only: the entry id is deterministic
-- (customer, source event or command, wallet), so a re-delivered record is dropped by
-- ON CONFLICT (entry_id) DO NOTHING, and a trigger refuses every UPDATE and DELETE.
-- A wallet's balance is the sum of its amounts (`openmonetize reconcile --source postgres`).

CREATE TABLE ledger_entries (
    entry_id           text PRIMARY KEY,
    customer_id        text NOT NULL,
    wallet_id          text NOT NULL,
    kind               text NOT NULL,
    amount             numeric(38, 12) NOT NULL,
    balance_after      numeric(38, 12) NOT NULL,
    event_id           text,
    command_id         text,
    grant_id           text,
    reservation_id     text,
    burn_table_version integer,
    reason             text,
    metadata           jsonb,
    occurred_at        timestamptz NOT NULL,
    applied_at         timestamptz NOT NULL,  -- when the wallet agent applied it (the record's recorded_at)
    recorded_at        timestamptz NOT NULL DEFAULT now(),  -- when the sink wrote it here
    kafka_partition    integer NOT NULL,
    kafka_offset       bigint NOT NULL
);

CREATE INDEX ledger_entries_wallet ON ledger_entries (wallet_id, occurred_at);
CREATE INDEX ledger_entries_customer ON ledger_entries (customer_id, occurred_at);
CREATE INDEX ledger_entries_event ON ledger_entries (customer_id, event_id) WHERE event_id IS NOT NULL;

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
