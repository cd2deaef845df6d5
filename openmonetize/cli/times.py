"""The TIME option type of the commands that take a moment (`dlq --since`, `replay --start`,
`plans run-due --now`)."""

from __future__ import annotations

from datetime import datetime

import click

from openmonetize.dlq.ids import parse_time

TIME_HELP = "RFC 3339 (2026-11-26T12:00:00Z; a date is its midnight UTC) or an age (30m, 2h, 7d)."


class TimeType(click.ParamType):
    """RFC 3339 / ISO 8601 or an age such as 30m, 2h, 7d (see dlq.parse_time)."""

    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
