"""The Postgres stores: plain functions over a psycopg connection, one module per family of
tables. The API's routes, the operator CLI, the tools and the tests share them.

- `tenants`: tenants and their API keys;
- `users_and_teams`: a tenant's users, teams and memberships;
- `ledger_reads`: pages of the ledger the ledger sink writes;
- `catalog`: burn tables, provider prices and tenant settings, and their catalog records;
- `plans`: plans and subscriptions;
- `replay_runs`: the record of each rebilling run and the one-run-per-tenant lock.

A store refuses with the domain errors of `refusals`, never an HTTP error: api/errors.py maps
them to responses.

Two tables are the HTTP layer's own and stay in api/: the answers kept for `Idempotency-Key`
(api/idempotency.py) and the dashboard's signed-out sessions (api/dashboard/sessions.py).
Nothing outside api/ reads them.
"""
