-- Idempotency keys of the credits routes (api/idempotency.py): per tenant, the first request
-- made with a key (its hash and the command it became) and, once answered, its response, so a
-- retry gets the same answer and writes no second command. Keys are kept: the command id is
-- derived from (tenant, key), so a key forgotten and reused would name an old command.

CREATE TABLE idempotency_keys (
    customer_id     text NOT NULL REFERENCES customers (customer_id),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    route           text NOT NULL,
    request_hash    bytea NOT NULL,
    command_id      text NOT NULL,
    response_status integer,
    response_body   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (customer_id, idempotency_key),
    CHECK ((response_status IS NULL) = (response_body IS NULL))
);
