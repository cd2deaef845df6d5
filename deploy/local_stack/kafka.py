"""The local Kafka broker: official Apache Kafka jars from Maven Central, KRaft, one node.

The jars are resolved by `mvn dependency:copy-dependencies` from deploy/kafka/pom.xml into the
cache dir (kept across `stack down`); storage is formatted once with the Kafka storage tool;
the broker runs as `java ... kafka.Kafka server.properties` on the machine's Java 17.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient

from deploy.local_stack.maven import copy_dependencies
from deploy.local_stack.processes import ManagedProcess, StackError, require_free_port, tail, wait_until
from deploy.local_stack.system import ensure_command
from openmonetize.kafka_topics import TopicError, ensure_topics
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from schemas.topics import topics

log = get_logger(__name__)
KAFKA_DIR = Path(__file__).resolve().parent.parent / "kafka"


class KafkaService:
    name = "kafka"

    def __init__(self, settings: Settings, process: ManagedProcess):
        self.settings = settings
        self.process = process
        self.home = settings.stack_dir / "kafka"
        self.libs = settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        if self.process.pid():
            self._wait_ready()
            self.ensure_topics()
            return "already running"
        require_free_port("127.0.0.1", self.settings.kafka_port, "KAFKA_PORT", self.name)
        require_free_port("127.0.0.1", self.settings.kafka_controller_port, "KAFKA_CONTROLLER_PORT", self.name)
        java = ensure_command("java", "openjdk-17-jre-headless")
        self.ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._write_server_properties()
        self._format_storage(java, props)
        self.process.start(
            [
                java,
                f"-Xmx{self.settings.kafka_heap}",
                "-Xms256m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                # The client JIT only: on a box the broker shares with the whole stack, C2's
                # compiling took 3.5-4.4 CPU-s of the first 40,000-event backlog after
                # `stack up` (1.3 now) and ~0.3-0.9 s of each run for minutes after; the broker's
                # own work is I/O, checksums and copies, and raw produce was not slower.
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
                "-cp",
                f"{self.libs}/*",
                "kafka.Kafka",
                str(props),
            ],
            cwd=self.home,
        )
        self._wait_ready()
        self.ensure_topics()
        return "started"

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30.0)

    def status(self) -> str:
        if not self.process.pid():
            return "stopped"
        try:
            names = self._admin().list_topics(timeout=3).topics
        except Exception as exc:  # noqa: BLE001
            return f"running, not answering ({exc})"
        wanted = [t.name for t in topics(self.settings).all()]
        missing = [n for n in wanted if n not in names]
        return "running" if not missing else f"running, missing topics {missing}"

    # --- steps ---------------------------------------------------------------------------
    def ensure_jars(self) -> None:
        version = self.settings.kafka_version
        copy_dependencies(KAFKA_DIR / "pom.xml", self.libs, {"kafka.version": version, "kafka.libs": str(self.libs)},
                          "kafka_2.13-*.jar", f"Kafka {version}")

    def _write_server_properties(self) -> Path:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            "num.partitions": str(s.kafka_partitions),
            # One node: every internal topic has one replica. Exactly-once needs the
            # transaction log settings too, not only the offsets topic's.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created explicitly (schemas/topics.py and Faust's internal topics).
            "auto.create.topics.enable": "false",
            "log.retention.check.interval.ms": "60000",
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _format_storage(self, java: str, props: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id_file = self.home / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id = self._storage_tool(java, ["random-uuid"]).strip().splitlines()[-1]
            cluster_id_file.write_text(cluster_id + "\n")
        cluster_id = cluster_id_file.read_text().strip()
        self._storage_tool(java, ["format", "-t", cluster_id, "-c", str(props), "--ignore-formatted"])

    def _storage_tool(self, java: str, args: list[str]) -> str:
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
                "-Dlog4j2.level=WARN",
                "-cp",
                f"{self.libs}/*",
                "kafka.tools.StorageTool",
                *args,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"kafka storage tool {args[0]} failed:\n{(result.stdout + result.stderr)[-3000:]}")
        return result.stdout

    def _admin(self, quiet: bool = False) -> AdminClient:
        config = {"bootstrap.servers": self.settings.kafka_bootstrap, "socket.timeout.ms": 3000}
        if quiet:
            config["log_level"] = 0  # a readiness probe: "connection refused" until the broker listens is expected
        return AdminClient(config)

    def _wait_ready(self) -> None:
        def answers() -> bool:
            if not self.process.pid():
                raise StackError(f"kafka exited during start-up; last log lines:\n{tail(self.process.log_file)}")
            self._admin(quiet=True).list_topics(timeout=2)
            return True

        if not wait_until(answers, self.settings.stack_start_timeout_s, interval_s=0.5):
            raise StackError(
                f"kafka did not answer on {self.settings.kafka_bootstrap} within "
                f"{self.settings.stack_start_timeout_s:.0f}s; see {self.process.log_file}"
            )

    def ensure_topics(self) -> list[str]:
        """Create the project's missing topics and grow partition counts; returns what it created."""
        try:
            return ensure_topics(self._admin(), topics(self.settings).all())
        except TopicError as exc:
            raise StackError(str(exc)) from exc
