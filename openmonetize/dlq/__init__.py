"""The dead-letter queue, read and re-driven: the core of `openmonetize dlq list|show|retry`
(the command bodies and their output are in openmonetize/cli/dlq.py).

Every record the pipeline cannot process goes to the DLQ topic (`usage.dlq`) as a `DlqRecord`
(schemas/avro/dlq_record.avsc): the reason, the stage, where it came from (source topic,
partition, offset) and the ORIGINAL key and value bytes. A DLQ record is named by its place in
the DLQ topic, `partition:offset` (`DlqId`).

Retrying re-produces the original key and value bytes to the source topic, with two headers:
`openmonetize-dlq-retry-of` (the DLQ id it came from) and `openmonetize-dlq-retry-count` (how
many times this record has been re-driven). The pipeline does not copy headers into the DLQ
record, so the count of a DLQ record is read from the record its `source_offset` points at:
when a retried record fails again, that is the retried copy, which carries the count. A record
whose count reached `--max-retries` is skipped, so a record that keeps failing cannot loop.
Re-driving is safe because the pipeline dedupes by event id (usage events) and command id
(wallet commands and debits): a record that was in fact applied is not applied twice.

One module per job: `ids` (record ids and times), `entries` (records and selections),
`retry_rules` (what may be re-driven, the retry headers), `reader` (reading the DLQ and the
source records), `redrive` (producing them again) and `kafka_access` (the error and logs the
Kafka clients share). The command bodies and their output are in openmonetize/cli/dlq.py.
"""
