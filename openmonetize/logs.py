"""Structured logs: one JSON object per line on stderr, for our code and for the libraries.

Our code logs with `structlog.get_logger(__name__).info("event_name", key=value)`. Records from
the standard library (uvicorn, faust, aiokafka, psycopg) go through the same renderer, so a
process's whole output is machine-readable.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def _orjson_dumps(obj: object, default=None) -> str:
    return orjson.dumps(obj, default=default).decode()


_formatter: dict[str, logging.Formatter] = {}


def handler() -> logging.Handler:
    """A stderr handler with our renderer, for libraries that install their own logging
    (Faust's worker takes a dictConfig naming this factory). Call configure() first."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(_formatter["formatter"])
    return stream


def configure(level: str = "INFO", fmt: str = "json", service: str | None = None) -> None:
    """Route structlog and stdlib logging to one renderer. Safe to call more than once."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    renderer = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _formatter.update(
        formatter=structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler()]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; make its loggers propagate to ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
