"""What the DLQ tools' Kafka clients share: the error they raise for the operator, and
librdkafka's own log lines kept at DEBUG."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError

from openmonetize.logs import get_logger

log = get_logger(__name__)


class DlqError(Exception):
    """A problem the operator can fix or should know about (Kafka unreachable, missing topic);
    the message says which."""


def log_kafka_error(err: KafkaError) -> None:
    log.debug("kafka_client_error", error=err.str(), fatal=err.fatal())


class _LibrdkafkaLog(logging.LoggerAdapter):
    """librdkafka's own lines (a refused connection is logged every 50 ms) at DEBUG: a command
    reports what went wrong in its one error line; `openmonetize -v` shows them."""

    def log(self, level, msg, *args, **kwargs):
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)


KAFKA_LOG = _LibrdkafkaLog(logging.getLogger("openmonetize.dlq.librdkafka"), {})
