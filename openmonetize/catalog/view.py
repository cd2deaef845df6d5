"""The whole catalog in memory in a process, kept current from the `billing.catalog` topic."""

from __future__ import annotations

from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import decode
from openmonetize.compacted_view import CompactedView
from openmonetize.settings import Settings
from schemas.topics import topics


class Catalog(CatalogIndex):
    """The whole catalog in memory, kept current from the billing.catalog topic.

    `start()`, then `wait_until_current()` before serving: lookups answer from what has been
    read so far.
    """

    def __init__(self, settings: Settings):
        super().__init__(settings.default_burn_markup)
        self._view = CompactedView(
            settings.kafka_bootstrap, topics(settings).billing_catalog.name, decode, on_update=self.apply
        )

    def start(self) -> Catalog:
        self._view.start()
        return self

    def wait_until_current(self, timeout_s: float = 30.0) -> bool:
        return self._view.wait_until_current(timeout_s)

    @property
    def decode_errors(self) -> int:
        return self._view.decode_errors

    def close(self) -> None:
        self._view.close()
