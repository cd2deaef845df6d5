"""A minimal Faust app for the foundation test, run as its own worker process:
reads SOURCE, upper-cases each value, writes SINK, with exactly-once processing
(Kafka transactions), and counts what it saw in a table.

usage: python tests/integration/faust_echo_app.py APP_ID SOURCE SINK DATADIR worker
"""

import sys

import faust

from openmonetize.settings import get_settings

app_id, source_name, sink_name, datadir = sys.argv[1:5]
sys.argv = [sys.argv[0], *sys.argv[5:]]
settings = get_settings()

app = faust.App(
    app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    datadir=datadir,
    processing_guarantee="exactly_once",
    topic_partitions=2,
    topic_replication_factor=1,
    web_enabled=False,
)
source = app.topic(source_name, value_type=bytes, value_serializer="raw")
sink = app.topic(sink_name, value_type=bytes, value_serializer="raw")
seen = app.Table("seen", default=int)


@app.agent(source)
async def echo(stream):
    async for value in stream:
        seen["count"] += 1
        await sink.send(value=value.upper())


if __name__ == "__main__":
    app.main()
