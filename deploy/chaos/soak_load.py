"""The soak's load: one AckingClient (deploy/chaos/client.py) per tenant, all but one running.

The reconciler can only be exact for wallets nobody is charging: a balance read mid-batch is
ahead of the ledger read after it, and the sinks write a batch behind (`openmonetize reconcile
--help`). So one tenant rests at a time: its client stops (every batch it took acknowledged),
the pipeline settles, its wallets are reconciled, and at the next turn it takes over from the
next one. The other clients share the rate, which stays the same.
"""

from __future__ import annotations

import threading
from collections import Counter

from deploy.chaos.client import AckingClient
from deploy.chaos.tenants import FUNDED_USERS, Tenants
from producers.loadgen import EventGenerator


class Load:
    def __init__(self, api_url: str, tenants: Tenants, rate: float, seed: int, batch_size: int):
        self.api_url, self.keys, self.batch_size = api_url, tenants.keys, batch_size
        ids = tenants.ids
        self.rate_each = rate / (len(ids) - 1)  # one tenant rests
        # users beyond the funded ones (and teams) are charged to the tenant's wallet, as in make chaos
        self.events = {t: iter(EventGenerator(seed=seed * 1000 + i, tenants=[t], users=2 * FUNDED_USERS,
                                              duplicate_share=0.05)) for i, t in enumerate(ids)}
        self.running: dict[str, AckingClient] = {}
        self.stopped: list[AckingClient] = []
        self._lock = threading.Lock()

    def start(self, tenant: str) -> None:
        client = AckingClient(self.api_url, {tenant: self.keys[tenant]}, self.events[tenant], self.rate_each,
                              batch_size=self.batch_size)
        client.start()
        with self._lock:
            self.running[tenant] = client

    def stop(self, tenant: str) -> None:
        """Returns once every batch the tenant's client took is acknowledged (raises its RunError)."""
        with self._lock:
            client = self.running.pop(tenant)
            self.stopped.append(client)
        client.stop()

    def stop_all(self) -> list[BaseException]:
        """Stops every client at once (each may be retrying a batch); returns their errors."""
        with self._lock:
            tenants = list(self.running)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=self._stop_noting, args=(t, errors)) for t in tenants]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return errors

    def _stop_noting(self, tenant: str, errors: list[BaseException]) -> None:
        try:
            self.stop(tenant)
        except Exception as exc:  # noqa: BLE001 - reported with the results
            errors.append(exc)

    def _clients(self) -> list[AckingClient]:
        with self._lock:
            return [*self.running.values(), *self.stopped]

    def acknowledged_count(self) -> int:
        """About the events acknowledged so far (a client retry sent by the tenant's next client counts twice)."""
        return sum(c.acknowledged_count() for c in self._clients())

    def acknowledged(self) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for client in self._clients():
            found |= client.acknowledged
        return found

    def sent(self) -> int:
        """Events in acknowledged batches, the generator's retries included: the rate reached."""
        return sum(c.sent for c in self._clients())

    def retries(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for client in self._clients():
            total.update(client.retries)
        return dict(total)

    def errors(self) -> list[str]:
        """Clients whose thread stopped on a RunError (the rest of the run goes on without it)."""
        return [f"{tenant}: {client.error}" for tenant, client in list(self.running.items()) if client.error]
