"""`openmonetize`, the command line: the composition root of the product.

The one place that imports every layer (docs/development/layers.md): each module beside this
one is a command group and reaches into the package that does the work (deploy/ for `stack`,
api/, stream_processors/ and sinks/ for `run`, producers/ for `produce` and `loadgen`, the
ground package for the rest). Every level has --help. Heavy imports stay inside the commands,
so that a core install (producer client and SDK) can run `openmonetize produce`.
"""

from __future__ import annotations

from openmonetize.cli import admin, catalog, dlq, plans, produce, reconcile, replay, run, stack, topics
from openmonetize.cli.root import main

for command in (
    stack.stack,
    stack.migrate,
    admin.admin,
    topics.topics_group,
    catalog.catalog,
    produce.produce_command,
    produce.loadgen_command,
    reconcile.reconcile,
    dlq.dlq,
    run.proxy,
    run.run,
    replay.replay,
    plans.plans,
):
    main.add_command(command)

__all__ = ["main"]
