"""Every URL, port, topic name and limit, read from the environment and an optional `.env`.

One flat namespace of plain environment variable names (no prefix), so that the output of
`openmonetize stack env` can be sourced by a shell and read back by every process. The URL
settings default to the local stack's ports; set one explicitly to use an external service
(and drop that service from STACK_SERVICES so `stack up` does not start a local one).
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openmonetize.billing.default_burn_table import DEFAULT_MARKUP

SCHEMA_REGISTRY_OPERATOR_USER = "operator"  # the user name of the registry's basic auth
SCHEMA_REGISTRY_OPERATOR_KEY_FILE = "schema-registry-operator-key"
LOCAL_SERVICES = ("kafka", "postgres", "clickhouse", "api", "worker", "sink-ledger", "sink-clickhouse", "proxy")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=os.environ.get("OM_ENV_FILE", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- local stack -------------------------------------------------------------------
    stack_dir: Path = Field(Path(".stack"), description="Data, logs and PID files of the local stack.")
    stack_services: str = Field(
        ",".join(LOCAL_SERVICES),
        description="Comma-separated services `stack up` starts locally; drop one to use an external service.",
    )
    cache_dir: Path = Field(Path(".cache"), description="Downloaded Kafka jars (kept across `stack down`).")
    stack_start_timeout_s: float = Field(90.0, description="How long `stack up` waits for each service.")

    # --- Kafka ---------------------------------------------------------------------------
    kafka_version: str = Field("4.1.1", description="Apache Kafka broker version fetched from Maven Central.")
    kafka_port: int = Field(19092, description="Local broker listener port.")
    kafka_controller_port: int = Field(19093, description="Local KRaft controller port.")
    kafka_heap: str = Field("1g", description="Local broker JVM max heap.")
    kafka_bootstrap: str = Field("", description="Bootstrap servers; default 127.0.0.1:KAFKA_PORT.")
    kafka_partitions: int = Field(6, description="Partitions of each project topic (usage.events etc.).")
    kafka_replication_factor: int = Field(1, description="Replication factor of project topics.")
    usage_events_retention_ms: int = Field(
        400 * 24 * 3600 * 1000,
        description="Retention of usage.events, the replay source (default 400 days).",
    )

    # --- topics (the registry in schemas/topics.py reads these) --------------------------
    topic_usage_events: str = Field(
        "usage.events", description="Raw usage events, keyed customer_id:user_id; kept long: the replay source.")
    topic_usage_rated: str = Field(
        "usage.rated", description="Each charged event with its credits, USD cost and wallet: what the ClickHouse sink reads.")
    topic_ledger_entries: str = Field(
        "ledger.entries", description="One entry per money movement, deterministic ids: what the Postgres ledger sink reads.")
    topic_wallet_commands: str = Field(
        "wallet.commands", description="Purchases, grants, consumes, holds and adjustments, keyed by wallet: the only way to change one.")
    topic_wallet_balances: str = Field(
        "wallet.balances", description="Compacted: the latest balance per wallet, which every API process holds in memory.")
    topic_wallet_directory: str = Field(
        "wallet.directory", description="Compacted: the wallets that exist, written before a wallet's first command is "
                                        "acknowledged; what usage routing reads (docs/concepts/rating-and-routing.md).")
    topic_usage_dlq: str = Field(
        "usage.dlq", description="Records the pipeline could not process, with the reason, the stage and the original bytes.")
    topic_wallet_debits: str = Field("wallet.debits", description="Rated usage routed to its wallet (internal, keyed by wallet).")
    topic_billing_catalog: str = Field(
        "billing.catalog", description="Compacted topic of burn tables, provider prices and tenant settings (JSON)."
    )

    # --- usage events: what the edge accepts (schemas/usage_event.py) --------------------
    event_max_age_s: int = Field(35 * 24 * 3600, description="Oldest accepted event timestamp, seconds before now (35 days).")
    event_max_future_s: int = Field(300, description="Latest accepted event timestamp, seconds after now.")
    event_max_tokens: int = Field(50_000_000, description="Largest token count in one event field.")
    event_max_images: int = Field(1_000, description="Largest image_count of one event.")
    event_max_quantity: Decimal = Field(Decimal("1e12"), description="Largest quantity of one event.")
    event_max_metadata_entries: int = Field(64, description="Most metadata keys per event.")
    ingest_max_batch_events: int = Field(10_000, description="Most events in one ingest request (413 above).")
    ingest_max_body_bytes: int = Field(10 * 1024 * 1024, description="Largest ingest request body (413 above).")
    ingest_retry_after_s: int = Field(5, description="Retry-After (seconds) of a 503 from the ingest routes.")
    api_key_cache_ttl_s: float = Field(
        30.0, description="How long an API process trusts a looked-up key; revocations are heard at once (NOTIFY), this bounds a missed one."
    )
    api_key_negative_cache_ttl_s: float = Field(5.0, description="How long an unknown or revoked key is remembered.")
    api_key_failed_lookups_per_s: float = Field(
        5.0, ge=0, description="Lookups of unknown API keys one client address may cause per second per API process, "
                               "on average (429 above; known keys are never held back); 0: no limit."
    )
    api_key_failed_lookups_burst: int = Field(200, ge=1, description="Lookups of unknown API keys one client address may cause at once.")
    kafka_producer_timeout_ms: int = Field(
        10_000, description="Producers' message.timeout.ms (API ingest and the other producers; the worker has WORKER_OUTPUT_TIMEOUT_MS): how long a record may wait for its ack; past it, the request fails (503)."
    )
    worker_output_timeout_ms: int = Field(
        300_000, ge=1000, description="How long the worker's outputs may wait for Kafka's acknowledgement before the "
                                      "worker gives the batch up and restarts: long, so that a broker restart is waited "
                                      "out instead of restarting the worker into it."
    )
    kafka_producer_linger_ms: float = Field(5.0, description="Producers' linger.ms (batching delay).")
    kafka_producer_compression: str = Field(
        "zstd", description="Producers' compression.type: zstd halves lz4's size of usage.events (kept 400 days)."
    )

    # --- rating (openmonetize/catalog/index.py) ---------------------------------------------
    default_burn_markup: Decimal = Field(
        DEFAULT_MARKUP, ge=0, le=100,
        description="Markup on the provider price of the default burn table, which rates a tenant that has no burn "
        "table of its own: credits = USD cost x (1 + markup) / the tenant's credit_price_usd (0.2: +20%).",
    )

    # --- credits routes (api/routes/credits.py) -------------------------------------------
    credits_max_amount: Decimal = Field(
        Decimal("1000000000"), gt=0, description="Largest amount of one credits purchase, grant or consume (422 above)."
    )
    credits_wait_timeout_s: float = Field(
        5.0, gt=0, description="How long `?wait=true` waits for the wallet agent to apply a command before answering 202 pending."
    )

    # --- entitlement checks (api/routes/entitlements.py) ----------------------------------
    entitlement_reserve_ttl_s: int = Field(
        300, gt=0, description="How long a hold made by an entitlement check lasts when the request names no reserve_ttl_s."
    )
    entitlement_max_reserve_ttl_s: int = Field(
        3600, gt=0, description="Longest reserve_ttl_s an entitlement check accepts (422 above)."
    )

    # --- plans and subscriptions (openmonetize/plans/) --------------------------------------
    plans_scheduler_interval_s: float = Field(
        60.0, ge=0, description="How often each API process runs the plans scheduler (grants of the periods due), "
        "under a Postgres advisory lock so one process at a time; 0: never (run `openmonetize plans run-due`)."
    )

    # --- Postgres ------------------------------------------------------------------------
    postgres_port: int = Field(15432, description="Local Postgres port.")
    postgres_db: str = Field("openmonetize", description="Local stack's database.")
    postgres_user: str = Field("openmonetize", description="Local stack's role.")
    postgres_password: str = Field("openmonetize", description="Local stack only; set DATABASE_URL in production.")
    postgres_shared_buffers: str = Field(
        "1GB", pattern=r"^[0-9]+(kB|MB|GB)$",
        description="Local stack's Postgres `shared_buffers`: the ledger's indexes kept in its own cache. Taken "
                    "as it is used, not at start. At 256MB a ledger of 3,000,000 entries took ~25% more Postgres "
                    "CPU per entry written (docs/operations/performance.md, session 13).",
    )
    database_url: str = Field("", description="Postgres URL; default the local stack's.")
    database_pool_timeout_s: float = Field(
        5.0, gt=0, description="API: longest wait for a Postgres connection (and to open one) before a 503 "
                               "`database_unavailable` with Retry-After (INGEST_RETRY_AFTER_S)."
    )

    # --- ClickHouse ----------------------------------------------------------------------
    clickhouse_port: int = Field(18123, description="Local ClickHouse HTTP port (embedded chdb engine).")
    clickhouse_url: str = Field("", description="ClickHouse HTTP URL; default the local stack's.")
    clickhouse_database: str = Field("openmonetize", description="The analytics database.")
    clickhouse_user: str = Field(
        "", description="ClickHouse writer user (sink, migrations, rebilling, tooling); empty: the user in CLICKHOUSE_URL, "
                        "else 'openmonetize' on the local front, 'default' on an external server.")
    clickhouse_password: str = Field(
        "", repr=False, description="The writer's password; empty: the one in CLICKHOUSE_URL, else on the local front "
                                    "one drawn once and kept in STACK_DIR/secrets/clickhouse.json.")
    clickhouse_writer_table_functions: str = Field(
        "postgresql", description="Comma-separated table functions reaching other servers that the local front lets the "
                                  "writer call (postgresql: the ledger forecast of docs/guides/reporting.md); empty: none. "
                                  "file, url and the like are refused to every user whatever this says.")
    clickhouse_reader_user: str = Field(
        "reporting", description="ClickHouse read-only user (the API's reports, BI tools): reads CLICKHOUSE_DATABASE only.")
    clickhouse_reader_password: str = Field(
        "", repr=False, description="The reader's password; empty: drawn once on the local front (see CLICKHOUSE_PASSWORD); "
                                    "on an external server the reports then use the writer.")

    # --- processes -----------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Where the API listens.")
    api_port: int = Field(18080, description="HTTP API port.")
    api_url: str = Field("", description="Base URL of the API; default http://API_HOST:API_PORT.")
    api_workers: int = Field(2, ge=1, description="API worker processes (uvicorn workers); 1 runs in-process.")
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest request body of every route but ingest (INGEST_MAX_BODY_BYTES); 413 above."
    )
    api_rate_limit_per_s: float = Field(
        1000.0, ge=0, description="Requests per second one API key may make to one API process, on average (429 above); 0: no limit."
    )
    api_rate_limit_burst: int = Field(2000, ge=1, description="Requests one API key may make at once to one API process.")
    worker_web_port: int = Field(
        18066, description="Stream worker's web port (/metrics, Faust views); it also names the worker's data dir "
                           "(STACK_DIR/worker-PORT/), so several workers can share a host.")
    worker_processes: int = Field(
        0, ge=0, description="Stream workers `stack up` runs (0: one per CPU core); worker N > 1 is `worker-N`, "
                             "its web port WORKER_WEB_PORT + 100 x (N - 1). The test, chaos and soak stacks run 1: "
                             "their fault tests start and kill workers of their own."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Interface of the worker's web port and the sinks' /metrics ports (0.0.0.0 in a container)."
    )
    dedupe_store: str = Field(
        "rocksdb://", description="Faust store of the worker's tables (usage dedupe, wallets): rocksdb:// (on disk, a "
                                  "restart recovers only the changelogs' tail) or memory:// (rebuilt from the whole "
                                  "changelogs at each start)."
    )
    worker_app_id: str = Field("openmonetize", description="Faust app id: the worker's consumer group and table prefix.")
    worker_session_timeout_s: float = Field(
        10.0, description="How long the broker waits before it gives a silent (crashed) worker's partitions to others."
    )
    worker_static_membership: bool = Field(
        True, description="Join the worker group as a static member (id: app id, host, web port): a worker restarted "
                           "after a crash takes its partitions back at once; one stopped for good holds them idle "
                           "for WORKER_SESSION_TIMEOUT_S (docs/development/stream-processing.md)."
    )
    worker_batch_size: int = Field(
        2000, ge=1, le=100_000, description="Most records the usage agent reads and applies as one batch (stream_processors/batch_source.py)."
    )
    worker_wallet_batch_size: int = Field(
        8000, ge=1, le=100_000,
        description="Most records the wallet agent reads and applies as one batch. A batch is only as large as what "
                    "has arrived; when the agent is behind (one wallet charged for a whole backlog), a larger one "
                    "spreads its fixed round trips (owner commit, outputs, changelog) over more debits "
                    "(docs/operations/performance.md)."
    )
    worker_rocksdb_cache_mb: int = Field(
        64, ge=8, description="The one RocksDB block cache all the worker's table databases share, with their index and "
                              "filter blocks and their memtables (stream_processors/stores.py; docs/operations/soak.md)."
    )
    worker_rocksdb_memtables_mb: int = Field(
        32, ge=4, description="Most memory all the worker's RocksDB memtables together hold before the largest is "
                              "flushed (charged to WORKER_ROCKSDB_CACHE_MB)."
    )
    worker_malloc_arenas: int = Field(
        2, ge=0, description="glibc malloc arenas the worker's threads share (stream_processors/allocator.py); 0: "
                             "glibc's default, 8 per core."
    )
    worker_malloc_trim_s: float = Field(
        30.0, ge=0, description="How often the worker hands the free memory inside its malloc arenas back to the "
                                "kernel (malloc_trim; stream_processors/allocator.py); 0: never."
    )
    worker_standby_replicas: int = Field(
        1, ge=0, description="Standby copies each worker keeps of other workers' table partitions (Faust's "
                             "table_standby_replicas): a worker taking over a partition finds its dedupe entries and "
                             "wallets already local instead of restoring them from the changelog. Cheap since the dedupe "
                             "entries reach the changelog packed (stream_processors/changelog_packs.py). With static "
                             "membership a change takes effect at the group's next rebalance."
    )
    worker_linger_ms: float = Field(
        1.0, ge=0, description="The worker producer's linger.ms. It sends a whole batch's outputs at once and waits for "
                               "them, so a longer linger only delays each batch (KAFKA_PRODUCER_LINGER_MS, for the API, "
                               "batches concurrent requests)."
    )
    gc_threshold: int = Field(
        100_000, ge=700, description="Container objects allocated (less those freed) before the stream worker and the "
                                     "sinks run Python's cycle collector (gc.set_threshold; Python's default 700 cost the "
                                     "worker ~14 µs per event: openmonetize/cycle_collector.py)."
    )
    worker_memory_probe_s: float = Field(
        0.0, ge=0, description="Debugging: log where the worker's memory goes every so many seconds "
                               "(stream_processors/memory_probe.py; docs/operations/soak.md); 0: off."
    )

    # --- Both sinks (sinks/batch_consumer.py) ---------------------------------------------
    sink_session_timeout_s: float = Field(
        10.0, ge=6, le=300,
        description="How long the broker waits before it gives a silent (crashed) sink's partitions to its restart or "
                    "another sink (librdkafka's default, 45 s, kept the soak's killed sinks away ~47 s).")

    # --- Postgres ledger sink (sinks/ledger_postgres.py) ----------------------------------
    ledger_sink_group: str = Field("openmonetize-ledger-sink", description="Consumer group of the Postgres ledger sink.")
    ledger_sink_batch_rows: int = Field(5000, ge=1, description="Ledger sink: most entries written in one transaction.")
    ledger_sink_batch_ms: int = Field(50, ge=1, description="Ledger sink: longest wait (ms) to fill a batch before writing it.")
    ledger_sink_max_backoff_s: float = Field(5.0, gt=0, description="Ledger sink: longest pause between retries while Postgres is down.")
    ledger_sink_metrics_port: int = Field(18067, ge=0, description="Ledger sink's /metrics port (0: not served).")

    # --- ClickHouse usage sink (sinks/usage_clickhouse.py) -------------------------------
    clickhouse_sink_group: str = Field("openmonetize-clickhouse-sink", description="Consumer group of the ClickHouse sink.")
    clickhouse_sink_batch_rows: int = Field(20000, ge=1, description="ClickHouse sink: most rows in one INSERT.")
    clickhouse_sink_batch_ms: int = Field(500, ge=1, description="ClickHouse sink: longest wait (ms) to fill a batch before inserting it.")
    clickhouse_sink_max_backoff_s: float = Field(5.0, gt=0, description="ClickHouse sink: longest pause between retries while ClickHouse is down.")
    clickhouse_sink_timeout_s: float = Field(60.0, gt=0, description="ClickHouse sink: longest wait for one INSERT's answer.")
    analytics_nice: int = Field(
        19, ge=0, le=19, description="CPU niceness the ClickHouse sink and the embedded ClickHouse (`openmonetize run "
                                     "clickhouse`) start with: on a box they share with the workers, a backlog reaches "
                                     "the Postgres ledger first and analytics catches up after, on the CPU the money "
                                     "path leaves idle (docs/operations/performance.md); 0: the same priority as the rest.")
    clickhouse_sink_recent_ids: int = Field(
        50_000, ge=1000,
        description="ClickHouse sink: events remembered per partition to drop copies the worker re-emitted (about 100 bytes each).")
    clickhouse_sink_metrics_port: int = Field(18068, ge=0, description="ClickHouse sink's /metrics port (0: not served).")

    # --- rebilling replays (openmonetize/rebilling/) ----------------------------------------
    replay_max_range_days: int = Field(
        31, ge=1, description="Widest range `openmonetize replay` accepts without --force (days).")
    replay_workers: int = Field(
        0, ge=0, description="Processes reading usage.events partitions in a replay (0: one per core; at most one per partition).")
    replay_ledger_wait_s: float = Field(
        120.0, gt=0, description="How long a replay waits for the ledger sink, and for its adjustments to land without progress.")

    # --- Dashboard (api/dashboard/) ----------------------------------------------------
    dashboard_session_secret: str = Field(
        "", repr=False, description="64 hex characters sealing the dashboard's session cookies (AES-256-GCM), the same in "
                                    "every API process; empty: drawn at API start, so sessions end when the API restarts.")

    # --- Schema registry (api/routes/schema_registry.py) ----------------------------------
    schema_registry_operator_key: str = Field(
        "", repr=False, description="The operator credential the schema registry's writes need (registering, /config, "
        "deletes): HTTP basic auth as user `operator` with this password (Confluent clients' basic.auth.user.info "
        "`operator:KEY`), or `Authorization: Bearer KEY`; reads stay open. Empty: the key `openmonetize stack up` "
        "writes to STACK_DIR/secrets/schema-registry-operator-key, when that file exists; else every write is refused.")

    schema_registry_url: str = Field(
        "", description="A Confluent-compatible schema registry (Confluent, Karapace, Apicurio, another deployment of ours) "
        "that every codec of the pipeline registers and resolves its schemas in, through the stock "
        "confluent_kafka SchemaRegistryClient: producers, the API's ingest, the worker, both sinks, replay, the DLQ tools, "
        "reconcile. Empty: our own registry (its Postgres store; producer clients reach it at API_URL).")
    schema_registry_basic_auth_user_info: str = Field(
        "", repr=False, description="`USER:PASSWORD` for SCHEMA_REGISTRY_URL, sent as HTTP basic auth (Confluent's "
        "basic.auth.user.info); empty: no credential. Registering a schema the registry does not hold yet needs one "
        "with write rights (for ours: `operator:KEY`).")

    # --- AI proxy (api/proxy/) ----------------------------------------------------------
    proxy_host: str = Field("127.0.0.1", description="AI proxy listen address.")
    proxy_port: int = Field(18082, description="AI proxy port: the providers' SDKs' base URL points here.")
    proxy_openai_base_url: str = Field(
        "https://api.openai.com", description="Where the proxy sends OpenAI calls; the request's path (/v1/...) is appended.")
    proxy_anthropic_base_url: str = Field(
        "https://api.anthropic.com", description="Where the proxy sends Anthropic calls; the request's path is appended.")
    proxy_gemini_base_url: str = Field(
        "https://generativelanguage.googleapis.com", description="Where the proxy sends Gemini calls; the request's path is appended.")
    proxy_enforce: bool = Field(
        True, description="Check the user's credits before each proxied call and refuse it (402) when they do not cover "
                          "its estimate; false meters only.")
    proxy_connect_timeout_s: float = Field(10.0, gt=0, description="AI proxy: longest wait to connect to an upstream (then 502).")
    proxy_read_timeout_s: float = Field(
        600.0, gt=0, description="AI proxy: longest wait for an upstream's next bytes (504 before its headers, the stream cut after).")
    proxy_upstream_connections: int = Field(512, ge=1, description="AI proxy: most connections to each upstream, kept alive and reused.")
    proxy_max_body_bytes: int = Field(32 * 1024 * 1024, ge=1, description="AI proxy: largest request body (413 above).")

    # --- logging -------------------------------------------------------------------------
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field("json", description="json (one object per line) or console.")

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("json", "console"):
            raise ValueError("must be 'json' or 'console'")
        return value

    @field_validator("stack_services")
    @classmethod
    def _known_services(cls, value: str) -> str:
        unknown = [s for s in _split(value) if s not in LOCAL_SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; known: {', '.join(LOCAL_SERVICES)}")
        return value

    @model_validator(mode="after")
    def _derive_urls(self) -> Settings:
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        if not self.database_url:
            self.database_url = (
                f"postgresql://{self.postgres_user}:{self.postgres_password}"
                f"@127.0.0.1:{self.postgres_port}/{self.postgres_db}"
            )
        if not self.clickhouse_url:
            self.clickhouse_url = f"http://127.0.0.1:{self.clickhouse_port}"
        if not self.api_url:
            self.api_url = f"http://{self.api_host}:{self.api_port}"
        self.stack_dir = self.stack_dir.absolute()
        self.cache_dir = self.cache_dir.absolute()
        if not self.schema_registry_operator_key:
            self.schema_registry_operator_key = read_stack_secret(self.stack_dir, SCHEMA_REGISTRY_OPERATOR_KEY_FILE)
        return self

    @property
    def schema_registry_basic_auth(self) -> str:
        """Confluent clients' `basic.auth.user.info` for registry writes ("" when there is no key)."""
        key = self.schema_registry_operator_key
        return f"{SCHEMA_REGISTRY_OPERATOR_USER}:{key}" if key else ""

    @property
    def services(self) -> list[str]:
        return _split(self.stack_services)


def stack_secret_path(stack_dir: Path, name: str) -> Path:
    """Where the local stack keeps a secret it generated (deploy/local_stack/stack_secrets.py)."""
    return stack_dir / "secrets" / name


def read_stack_secret(stack_dir: Path, name: str) -> str:
    try:
        return stack_secret_path(stack_dir, name).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
