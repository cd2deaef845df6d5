"""docs/reference/topics.md from the topic registry (schemas/topics.py) at the default settings:
each topic, the setting naming it, its schema, partitions and configuration."""

from __future__ import annotations

from deploy.docs_gen.markdown import banner, code, table

DAY_MS = 24 * 3600 * 1000

INTRO = """\
`openmonetize stack up` and `openmonetize topics create` make these topics from the registry,
with explicit partition counts (`KAFKA_PARTITIONS`) and replication (`KAFKA_REPLICATION_FACTOR`).
Nobody else spells a topic string: code asks the registry. Record values are Avro in the
Confluent wire format (schemas in `schemas/avro/`, subject `<topic>-value`) except the billing
catalog, which is JSON. Faust's own changelog and repartition topics come on top of these
([stream internals](../development/stream-processing.md)).

"""


def render() -> str:
    from openmonetize.settings import Settings
    from schemas.topics import topics

    defaults = Settings.model_construct()  # the class defaults: no environment, no .env
    setting_of = {getattr(defaults, name): name for name in Settings.model_fields if name.startswith("topic_")}
    rows = []
    for spec in topics(defaults).all():
        setting = setting_of[spec.name]
        config = ", ".join(_setting(key, value) for key, value in sorted(spec.config.items()))
        rows.append((code(spec.name), code(setting.upper()), code(f"schemas/avro/{spec.schema_file}") if spec.schema_file
                     else "JSON", spec.partitions, config, Settings.model_fields[setting].description or ""))
    header = ("topic", "setting", "value schema", "partitions", "configuration", "what it carries")
    return banner("Topics", "`schemas/topics.py`") + INTRO + table(header, rows)


def _setting(key: str, value: str) -> str:
    days = int(value) / DAY_MS if key == "retention.ms" and value.isdigit() else 0
    return f"{key}={value} ({days:g} days)" if days else f"{key}={value}"
