"""The dashboard's pages, one module each; every one acts as the signed-in key's tenant through
our own JSON API (api/dashboard/internal.py) or the stores it uses (api/dashboard/reads.py)."""

from api.dashboard.pages import api_keys, burn_tables, dlq, overview, rebilling, signin, usage, wallets

ROUTERS = [m.router for m in (signin, overview, wallets, usage, burn_tables, api_keys, rebilling, dlq)]
