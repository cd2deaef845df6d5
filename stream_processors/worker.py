"""Run the Faust worker in the foreground with our JSON logs."""

from __future__ import annotations

import faust

from openmonetize.cycle_collector import collect_cycles_after
from openmonetize.settings import get_settings
from stream_processors import allocator
from stream_processors.app import create_app
from stream_processors.changelogs import create_changelogs


def run() -> None:
    settings = get_settings()
    allocator.limit_arenas(settings.worker_malloc_arenas)  # before the clients start their threads
    allocator.trim_every(settings.worker_malloc_trim_s)
    collect_cycles_after(settings.gc_threshold)
    app = create_app(settings)
    create_changelogs(app, settings.kafka_bootstrap)
    # Faust installs its own logging unless given a dictConfig; hand it ours.
    logging_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": "openmonetize.logs.handler"}},
        "root": {"handlers": ["default"], "level": settings.log_level.upper()},
    }
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), logging_config=logging_config, quiet=True)
    # Faust's terminal spinner, kept at WARNING and above, sets the ROOT logger to DEBUG: every
    # debug line of aiokafka and Faust was then built and thrown away (~5% of a worker's time).
    worker.spinner = None
    worker.execute_from_commandline()
