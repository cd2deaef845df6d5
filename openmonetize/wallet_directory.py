"""Which wallets exist, as usage routing must see them: the compacted `wallet.directory` topic.

Routing charges an event to the first wallet of the tenant's order that exists
(`wallet_ids.route`). "Exists" means: a command naming the wallet was acknowledged before the
event was produced (DESIGN, invariant 5). It cannot mean "the wallet agent has applied it":
that lags under load, and a purchase followed at once by usage was charged to the tenant's
wallet. So:

- whoever writes a command for a wallet the directory does not list first writes the wallet's
  entry here and waits for Kafka's acknowledgement (the credits routes, the plans scheduler):
  no command is acknowledged for a wallet that is not listed;
- the usage agent reads this topic to its end before a batch with events produced after its
  last catch-up (one watermark query), so every entry acknowledged before those events counts.

Wallets opened before this topic existed, or by a charge, are on `wallet.balances`: routing
asks both (`exists`). Readers keep only the keys; the value (Avro, `wallet_directory_entry.avsc`)
says who opened the wallet and when, for people reading the topic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from openmonetize.compacted_view import CompactedView


class WalletDirectory(CompactedView[bool]):
    """Every wallet id listed on wallet.directory, read from all partitions and kept current."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(bootstrap, topic, decode=lambda _value: True)

    def __contains__(self, wallet_id: str) -> bool:
        return self.get(wallet_id) is not None


def exists(directory: WalletDirectory | None, balances: Callable[[str], object]) -> Callable[[str], bool]:
    """Routing's existence test: listed in the directory, or has a balance (`balances(id)` not None)."""
    if directory is None:
        return lambda wallet_id: balances(wallet_id) is not None
    return lambda wallet_id: wallet_id in directory or balances(wallet_id) is not None


def entry(command: Mapping, at: datetime) -> dict:
    """The directory record (wallet_directory_entry.avsc) of the wallet a command names."""
    return {"wallet_id": command["wallet_id"], "customer_id": command["customer_id"],
            "opened_by": command["command_id"], "opened_at": at}
