"""Plans and subscriptions: N credits per period to each subscribed user or team.

- `periods`: the pure rules (period arithmetic, the grant lots of a period and their expiry,
  the deterministic command ids);
- the Postgres tables (migration 0008) and their catalog records are a store: openmonetize/stores/plans.py;
- `scheduler`: `run_due`, which issues each period's grant through `wallet.commands`, run by
  `openmonetize plans run-due` and, periodically, inside each API process (api/routes/plans.py).
"""
