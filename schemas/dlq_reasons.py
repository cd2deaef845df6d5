"""Why a record was parked on usage.dlq, and at which pipeline stage: the `reason` and `stage`
fields of a DLQ record (schemas/avro/dlq_record.avsc).

Their values are a contract: they are written to Kafka and Postgres, filtered on by
`openmonetize dlq --reason/--stage` and `GET /v1/dlq?reason=`, and counted in metrics. Code
that parks a record names its reason and stage from here, never as a bare string.
"""

from __future__ import annotations

from typing import Final


class Reason:
    """The reasons the pipeline writes (and those planned)."""

    DECODE_ERROR: Final = "decode_error"
    INVALID: Final = "invalid"  # planned: a field breaks the event contract
    TOO_OLD: Final = "too_old"
    TOO_NEW: Final = "too_new"
    CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"
    NO_RATE: Final = "no_rate"
    UNKNOWN_CUSTOMER: Final = "unknown_customer"
    INSUFFICIENT_CREDITS: Final = "insufficient_credits"
    INVALID_COMMAND: Final = "invalid_command"
    PROCESSING_ERROR: Final = "processing_error"  # a bug: the record is parked with the exception
    UNSTORABLE: Final = "unstorable"  # a sink's store refused what the record holds


class Stage:
    """Where in the pipeline a record was refused."""

    DECODE: Final = "decode"
    DEDUPE: Final = "dedupe"
    RATE: Final = "rate"
    ROUTE: Final = "route"
    DEBIT: Final = "debit"
    SINK_LEDGER: Final = "sink-ledger"
    SINK_CLICKHOUSE: Final = "sink-clickhouse"


# `--reason` and `?reason=` accept only these (every reason and stage above, in their order), so
# that a typo is an error instead of an empty result.
KNOWN_REASONS = tuple(value for name, value in vars(Reason).items() if name.isupper())
KNOWN_STAGES = tuple(value for name, value in vars(Stage).items() if name.isupper())

# What fixes each reason before a retry re-drives the record (the dashboard and `GET /v1/dlq` show it).
REMEDIES = {
    Reason.DECODE_ERROR: "The record is not a usage event of the registered schema: fix the producer; a retry fails "
                         "the same way.",
    Reason.INVALID: "A field breaks the event contract (the detail names it): send a corrected event with a new "
                    "event_id.",
    Reason.TOO_OLD: "Older than the accepted window (EVENT_MAX_AGE_S): it cannot be charged by the stream; re-bill it "
                    "by hand.",
    Reason.TOO_NEW: "Its timestamp is ahead of the clock: fix the sender's clock, then retry once the time has come.",
    Reason.CONFLICTING_DUPLICATE: "The event_id was already charged with other usage: send the new usage with a new "
                                  "event_id.",
    Reason.NO_RATE: "Nothing prices it: add a rule for this model or unit to your burn table (or create one), then "
                    "retry.",
    Reason.UNKNOWN_CUSTOMER: "The customer_id is not a tenant: create it (openmonetize admin customers create), then "
                             "retry.",
    Reason.INSUFFICIENT_CREDITS: "The wallet could not pay under the reject policy: top up the wallet, then retry.",
    Reason.INVALID_COMMAND: "The wallet command cannot apply (the detail says why): send a corrected command.",
    Reason.PROCESSING_ERROR: "A bug met this record (the detail names it): report it; retry once it is fixed.",
    Reason.UNSTORABLE: "The store refused what the record holds (the detail says why), so it is not in the ledger or "
                       "analytics and `openmonetize reconcile` reports it; fix the sender, a retry fails the same way.",
}
