"""`make soak`: a long run at a steady rate with a random fault every few minutes, the reconciler
every minute, and the memory of every process over time.

    python -m deploy.chaos.soak --duration 30m --rate 2000 --fault-every 120 [--seed N]

Run it on a stack of its own (`make soak DURATION=30m` starts one from deploy/soak.env and stops
it after): it kills processes and restarts Kafka and Postgres. Built from `make chaos`'s parts:

- the load: fresh tenants (deploy/chaos/tenants.py), each sent generated events with 5% client
  retries through HTTP ingest by an AckingClient (deploy/chaos/client.py), which re-sends a
  failed batch with the same ids and records what the API acknowledged; one tenant rests at a
  time so that the reconciler sees wallets nobody is charging (deploy/chaos/soak_load.py);
- the faults (deploy/chaos/faults.py), one every --fault-every seconds, drawn by --seed:
  worker, sink-ledger and sink-clickhouse killed -9, the broker and Postgres stopped and started,
  a second worker joining for a while (a rebalance);
- every --reconcile-every seconds, the resting tenant's wallets through `openmonetize reconcile`
  (against the Postgres ledger: --reconcile-source) once everything it sent went through
  (deploy/chaos/marks.py); at the end every tenant's against all sources;
- every second the consumer groups' lag; every --sample-every seconds the RSS of each process
  of the stack (deploy/chaos/rss.py);
- at the end, from the clients' record, as `make chaos` checks (deploy/chaos/ledger.py): `lost`
  (acknowledged, never charged in the Postgres ledger) and `double_charged`.

Prints a line a minute; writes soak-results.json at the repository root (docs/operations/soak.md reads
it); exit code 1 when anything was lost or charged twice, or a reconcile was not clean.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from deploy.chaos import rss
from deploy.chaos.faults import FAULTS, SINK_KILLS, Fault, Faults
from deploy.chaos.ledger import Ledger
from deploy.chaos.marks import Chase, Marks, MarksReader, pipeline_stages
from deploy.chaos.soak_load import Load
from deploy.chaos.soak_plan import fault_schedule, parse_duration
from deploy.chaos.soak_summary import passed, rss_summary
from deploy.chaos.tenants import Tenants
from deploy.local_stack.stack import Stack
from openmonetize.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "soak-results.json"
SOAK_FAULTS = ("worker_kill", "sink_ledger_kill", "sink_clickhouse_kill", "broker_restart", "postgres_down",
               "rebalance")
SETTLE_TIMEOUT_S = 300.0  # the longest wait for the pipeline to take everything sent before a moment
RECONCILE_TIMEOUT_S = 900.0


def say(line: str) -> None:
    print(line, flush=True)


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def run_reconcile(customer: str | None, source: str) -> dict:
    """`openmonetize reconcile --json` in a process of its own (reading a topic decodes every
    record: not on the load's GIL). {"clean": bool | None (None: it could not run), "mismatches",
    "error", "seconds"}."""
    argv = [sys.executable, "-m", "openmonetize", "reconcile", "--json", "--source", source,
            *(["--customer", customer] if customer else [])]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=RECONCILE_TIMEOUT_S, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"clean": None, "mismatches": [], "error": "timed out", "seconds": round(time.monotonic() - started, 1)}
    seconds = round(time.monotonic() - started, 1)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode in (0, 1) and lines:
        report = json.loads(lines[-1])
        return {"clean": not report["mismatches"], "mismatches": report["mismatches"], "error": None,
                "seconds": seconds}
    return {"clean": None, "mismatches": [], "error": (done.stderr or done.stdout).strip()[-400:], "seconds": seconds}


class Soak:
    def __init__(self, stack: Stack, args: argparse.Namespace, faults: list[Fault]):
        self.settings, self.args = stack.settings, args
        self.faults = Faults(stack)
        self.reader = MarksReader(self.settings)
        self.stages = pipeline_stages(self.settings)
        self.plan = fault_schedule(args.seed, args.duration_s, args.fault_every, [f.name for f in faults])
        self.by_name = {f.name: f for f in faults}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.chases: list[Chase] = []
        self.fault_log: list[dict] = []
        self.recoveries: list[tuple[dict, Chase]] = []
        self.reconciles: list[dict] = []
        self.lag_max: dict[str, int] = {}
        self.lag_max_at: dict[str, float] = {}
        self.lag: dict[str, list] = {}
        self.rss: dict[str, list] = {}
        self.pss: dict[str, list] = {}
        self.pids: dict[str, list] = {}
        self.last_lags: dict[str, int] = {}
        self.client_errors: list[str] = []
        self.processes = ["kafka", "postgres", *stack.supervised]

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- what the main loop does every second ---------------------------------------------
    def chase(self, created_at: float | None = None, clickhouse: bool = True) -> Chase:
        """A Chase of everything acknowledged before now (or `created_at`) through the worker and
        the sinks (the ledger's alone: not `clickhouse`), advanced by tick()."""
        stages = self.stages if clickhouse else pipeline_stages(self.settings, clickhouse=False)
        chase = Chase(stages, created_at=created_at or time.monotonic())
        with self._lock:
            self.chases.append(chase)
        return chase

    def tick(self) -> None:
        try:
            marks: Marks | None = self.reader.read()
        except Exception:  # noqa: BLE001 - the broker is away: no reading this second
            marks = None
        if marks is not None:
            now = round(self.elapsed(), 1)
            self.last_lags = self.reader.lags(marks)
            for name, lag in self.last_lags.items():
                if lag > self.lag_max.get(name, -1):
                    self.lag_max[name], self.lag_max_at[name] = lag, now
            with self._lock:
                self.chases = [c for c in self.chases if not c.advance(marks)]
        with self._lock:
            for record, chase in self.recoveries:
                if chase.done_at is not None:
                    record["recovery_s"] = chase.seconds()
            self.recoveries = [(r, c) for r, c in self.recoveries if c.done_at is None]

    def sample(self) -> None:
        now = round(self.elapsed(), 1)
        pids = [(name, pid) for name in self.processes if (pid := self.faults.process(name).pid())]
        if self.faults.extra_worker is not None:
            pids.append(("worker-extra", self.faults.extra_worker.pid))
        for name, pid in [*pids, ("soak-client", os.getpid())]:
            starts = self.pids.setdefault(name, [])
            if not starts or starts[-1][1] != pid:
                starts.append([now, pid])
        measured = rss.sample(pids)
        if (own := rss.tree_mb(os.getpid(), {})) is not None:  # alone: not the reconcile it runs
            measured["soak-client"] = own
        for name, (rss_mb, pss_mb) in measured.items():
            self.rss.setdefault(name, []).append([now, rss_mb])
            self.pss.setdefault(name, []).append([now, pss_mb])
        for name, lag in self.last_lags.items():
            self.lag.setdefault(name, []).append([now, lag])

    # --- faults, in a thread each -----------------------------------------------------------
    def run_fault(self, fault: Fault, planned_at: float) -> None:
        record = {"name": fault.name, "planned_at_s": planned_at, "at_s": round(self.elapsed(), 1),
                  "hold_s": fault.hold_s, "restore_s": None, "recovery_s": None, "error": None}
        with self._lock:
            self.fault_log.append(record)
        injected = time.monotonic()
        try:
            fault.inject(self.faults)
            time.sleep(fault.hold_s)  # the fault lasts this long
            fault.restore(self.faults)
        except Exception as exc:  # noqa: BLE001 - reported with the results; the soak goes on
            record["error"] = f"{type(exc).__name__}: {exc}"
        restored = time.monotonic()
        record["restore_s"] = round(restored - injected, 1)
        chase = self.chase(created_at=restored)
        with self._lock:
            self.recoveries.append((record, chase))

    # --- the resting tenant, in a thread ----------------------------------------------------
    def rest(self, load: Load, tenant: str) -> None:
        record = {"tenant": tenant, "at_s": round(self.elapsed(), 1), "settle_s": None, "clean": None,
                  "attempts": 0, "first_attempt": None, "seconds": None, "mismatches": [], "error": None}
        with self._lock:
            self.reconciles.append(record)
        started = time.monotonic()
        try:
            load.stop(tenant)
        except Exception as exc:  # noqa: BLE001
            self.client_errors.append(f"{tenant}: {exc}")
        source = self.args.reconcile_source
        chase = self.chase(clickhouse=source != "postgres")
        if chase.finished.wait(SETTLE_TIMEOUT_S):
            record["settle_s"] = round(time.monotonic() - started, 1)
        record.update(self.reconciled(tenant, source, record, [tenant]))

    def reconciled(self, customer: str | None, source: str, record: dict, tenants: list[str]) -> dict:
        """Reconcile; again after 15 s when it could not run or drifted (a drift that stays is the
        failure). Only the wallets of `tenants` count: the stack may hold others."""
        record["source"] = source
        for attempt in range(1, 4):
            outcome = run_reconcile(customer, source)
            if outcome["clean"] is False:
                outcome["mismatches"] = [m for m in outcome["mismatches"]
                                         if any(m["wallet_id"].startswith(f"w:{t}:") for t in tenants)]
                outcome["clean"] = not outcome["mismatches"]
            record["attempts"] = attempt
            if attempt == 1:
                record["first_attempt"] = {True: "clean", False: "drift", None: "error"}[outcome["clean"]]
                record["first_mismatches"] = outcome["mismatches"][:5]
            if outcome["clean"] or (outcome["clean"] is False and attempt >= 2):
                break
            time.sleep(15)  # a Postgres or broker restart under way; then once more for a drift
        return {"clean": outcome["clean"], "seconds": outcome["seconds"],
                "mismatches": outcome["mismatches"][:5], "error": outcome["error"]}

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict:
        args = self.args
        tenants = Tenants(self.settings, count=args.tenants + 1, prefix="soak")
        ids = tenants.ids
        ledger = Ledger(self.settings, ids)
        load = Load(self.settings.api_url, tenants, args.rate, args.seed, args.batch)
        say(f"soak: {clock(args.duration_s)} at {args.rate:,.0f} events/s over {args.tenants} tenants (+1 resting), "
            f"seed {args.seed}; faults at " + ", ".join(f"{clock(at)} {name}" for at, name in self.plan))
        self.started = time.monotonic()
        for tenant in ids[:-1]:
            load.start(tenant)
        resting, turn = ids[-1], 0
        fault_thread = rest_thread = None
        next_sample, next_turn, next_progress, progress = 0.0, args.reconcile_every, 60.0, (0.0, 0)
        plan = list(self.plan)
        while (now := self.elapsed()) < args.duration_s:
            self.tick()
            if now >= next_sample:
                self.sample()
                next_sample += args.sample_every
            if plan and now >= plan[0][0] and not (fault_thread and fault_thread.is_alive()):
                at, name = plan.pop(0)
                fault_thread = threading.Thread(target=self.run_fault, args=(self.by_name[name], at), daemon=True)
                fault_thread.start()
            if now >= next_turn:
                next_turn += args.reconcile_every
                if rest_thread and rest_thread.is_alive():
                    say(f"  {clock(now)}: the reconcile of {resting} is still running; no turn")
                else:
                    load.start(resting)
                    resting, turn = ids[turn % len(ids)], turn + 1
                    rest_thread = threading.Thread(target=self.rest, args=(load, resting), daemon=True)
                    rest_thread.start()
            if now >= next_progress:
                progress = self.progress(load, ledger, progress)
                next_progress += 60
            time.sleep(max(0.0, 1.0 - (self.elapsed() - now)))  # the loop's pace: one tick a second
        load_s = self.elapsed()
        say(f"  {clock(load_s)}: load stopped; draining")
        self.client_errors += [f"{type(e).__name__}: {e}" for e in load.stop_all()]
        if fault_thread:
            fault_thread.join()
        final = self.chase()
        drain_deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while (not final.finished.is_set() or (rest_thread and rest_thread.is_alive())) \
                and time.monotonic() < drain_deadline:
            self.tick()
            time.sleep(1.0)  # the loop's pace while draining
        self.sample()
        return self.finish(load, ledger, ids, load_s, final)

    def progress(self, load: Load, ledger: Ledger, previous: tuple[float, int]) -> tuple[float, int]:
        now, sent = self.elapsed(), load.sent()
        rate = (sent - previous[1]) / max(now - previous[0], 1e-9)
        # the last two faults: the newest is usually still recovering when the line is printed
        fault = ", ".join(f"{f['name']} at {clock(f['at_s'])} recovery "
                          f"{f['recovery_s'] if f['recovery_s'] is not None else '…'} s"
                          for f in self.fault_log[-2:]) or "none yet"
        clean = sum(1 for r in self.reconciles if r["clean"])
        done = sum(1 for r in self.reconciles if r["seconds"] is not None)
        memory = " ".join(f"{name} {points[-1][1]:.0f}" for name, points in self.rss.items() if points)
        say(f"[{clock(now)}] accepted {load.acknowledged_count():,} ({rate:,.0f}/s) charged {ledger.charged_count():,} "
            f"| lag " + " ".join(f"{n} {v:,}" for n, v in self.last_lags.items())
            + f" | faults {fault} | reconcile {clean}/{done} clean | RSS MB {memory}")
        errors = load.errors()
        if errors:
            say(f"  client errors: {errors}")
        return now, sent

    def finish(self, load: Load, ledger: Ledger, ids: list[str], load_s: float, final: Chase) -> dict:
        acknowledged = load.acknowledged()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not ledger.caught_up(len(acknowledged)) and time.monotonic() < deadline:
            time.sleep(1.0)  # poll interval: the ledger and ClickHouse are counted, not chased
        say("  checking: lost, double charged, reconcile over every tenant")
        charged = ledger.charged()
        final_reconcile = {"tenant": None, "at_s": round(self.elapsed(), 1), "attempts": 0, "first_attempt": None}
        final_reconcile.update(self.reconciled(None, "all", final_reconcile, ids))
        runs = [*self.reconciles, final_reconcile]
        results = {
            "duration_s": round(load_s), "rate": self.args.rate, "rate_reached": round(load.sent() / load_s, 1),
            "seed": self.args.seed, "fault_every_s": self.args.fault_every, "tenants": ids,
            "commit": commit(), "accepted": len(acknowledged), "sent": load.sent(),
            "charged": len(charged & acknowledged), "lost": len(acknowledged - charged),
            "double_charged": ledger.double_charged(), "clickhouse_rows": ledger.clickhouse_rows(),
            "drain_s": final.seconds(),
            "reconcile_clean": all(r["clean"] for r in runs), "reconcile_runs": len(runs),
            "reconcile_failures": sum(1 for r in runs if not r["clean"]),
            "reconciles": self.reconciles, "final_reconcile": final_reconcile,
            "max_lag": self.lag_max, "max_lag_at_s": self.lag_max_at, "lag": self.lag,
            "faults": self.fault_log,
            "rss_summary": {name: rss_summary(points, self.pids.get(name, [])) for name, points in self.rss.items()},
            "pss_summary": {name: rss_summary(points, self.pids.get(name, [])) for name, points in self.pss.items()},
            "rss_mb": self.rss, "pss_mb": self.pss, "pids": self.pids,
            "client_retries": load.retries(), "client_errors": self.client_errors,
        }
        results["passed"] = passed(results)
        ledger.close()
        self.reader.close()
        return results


def commit() -> str:
    """The commit the run measured, `+dirty` when the working tree differed from it."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def report(results: dict) -> None:
    say("")
    say(f"rate {results['rate']:,.0f} asked, {results['rate_reached']:,.0f} events/s reached; accepted "
        f"{results['accepted']:,}; lost {results['lost']}; double charged {results['double_charged']}; ClickHouse "
        f"rows {results['clickhouse_rows']:,}; reconcile {results['reconcile_runs'] - results['reconcile_failures']}"
        f"/{results['reconcile_runs']} clean; max lag {results['max_lag']}")
    say("| fault | at | restore s | recovery s | error |")
    say("| --- | --- | --- | --- | --- |")
    for f in results["faults"]:
        say(f"| {f['name']} | {clock(f['at_s'])} | {f['restore_s']} | {f['recovery_s']} | {f['error'] or ''} |")
    say("| process | first MB | max MB | last MB | restarts | MB/min, last half |")
    say("| --- | --- | --- | --- | --- | --- |")
    for name, s in results["rss_summary"].items():
        say(f"| {name} | {s['first']} | {s['max']} | {s['last']} | {s['restarts']} | {s['slope_last_half_mb_per_min']} |")
    say(f"\n{'passed' if results['passed'] else 'FAILED'}; saved to {RESULTS}")


def main() -> None:
    known = {f.name: f for f in [*FAULTS, *SINK_KILLS]}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="30m", help="how long the load runs: 30m, 90s, 1h (default %(default)s)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s asked of the clients (default %(default)s)")
    parser.add_argument("--fault-every", type=float, default=120.0, help="seconds between faults (0: none)")
    parser.add_argument("--faults", default=",".join(SOAK_FAULTS), help="the kinds drawn from: %(default)s")
    parser.add_argument("--reconcile-every", type=float, default=60.0, help="seconds between reconciles")
    parser.add_argument("--reconcile-source", choices=("postgres", "all"), default="postgres",
                        help="what the reconcile each minute compares the balances with: the Postgres ledger (default; "
                             "`all` adds ledger.entries and ClickHouse, reading the whole topic each time); the one "
                             "at the end is always `all`")
    parser.add_argument("--seed", type=int, default=None, help="draws the faults and the events (default: random)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants loaded at once; one more rests")
    parser.add_argument("--batch", type=int, default=100, help="events per HTTP request")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    args = parser.parse_args()
    faulthandler.enable()  # a crash in a C extension (librdkafka) says where
    try:
        args.duration_s = parse_duration(args.duration)
    except ValueError as exc:
        parser.error(str(exc))
    wanted = [name.strip() for name in args.faults.split(",") if name.strip()]
    if unknown := [name for name in wanted if name not in known]:
        parser.error(f"unknown faults {unknown}; known: {', '.join(known)}")
    if args.tenants < 1:
        parser.error("--tenants: at least 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    stack = Stack(get_settings(), say=lambda line: None)
    results = Soak(stack, args, [known[name] for name in wanted]).run()
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    report(results)
    if not results["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
