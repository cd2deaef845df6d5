"""Rebilling: re-read usage.events for a time range, re-rate, book the difference per event.

A run (`openmonetize replay`, `POST /v1/rebilling/runs`):

1. refuses what it must (range wider than REPLAY_MAX_RANGE_DAYS without --force, a range older
   than usage.events keeps, a second run on the same tenant) and records itself in
   `replay_runs`;
2. under the tenant's lock, settles adjustments of earlier runs still in flight and waits for
   the ledger sink, so the Postgres ledger holds everything that will ever land;
3. reads the ledger's net charge per event (usage_debit + adjustments);
4. reads the range from usage.events, partitions in parallel processes, keeps the tenant's
   (and --user's) events, dedupes and re-rates them exactly as the usage agent does, and
   compares (`rerate`);
5. with --yes, books each difference as an adjustment command on wallet.commands, with a
   deterministic id, recorded first and then waited for in the ledger (`booking`);
6. with --rebuild-analytics, rewrites the changed ClickHouse rows and rebuilds the rollups.

Because the difference is always taken against the ledger once nothing is in flight, running
the same replay again books nothing, and a run killed anywhere resumes (same --run-id) without
booking anything twice.
"""
