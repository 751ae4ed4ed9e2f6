"""Run every benchmark and regenerate the table (and the machine paragraph) in docs/benchmarks.md.

    ./dev run python -m bench.run_all [--smoke] [--only NAME...] [--write PATH]
        [--machine NAME]

Each benchmark runs in full (or with --smoke, in its short CI form) as a subprocess with
BENCH_RESULTS set, so that besides its usual lines (shown on stderr) it records one JSON line
per table cell (bench/results.py). The table is rebuilt from ROWS below, which hold every row's
wording and target; ✓/✗ is checked against the target on full runs (targets are for the full
sizes, so smoke rows get none). Rows of benchmarks not run (with --only, or that failed) keep
their previous figures, machine and date. Only the text between the `<!-- bench:machine -->`
and `<!-- bench:table -->` markers (and their closing `<!-- /bench:… -->`) is regenerated; the
rest of the page, notes included, is maintained by hand.

A full run writes docs/benchmarks.md (or --write PATH; `--write -` prints instead). A smoke run
only prints the regenerated sections, unless --write is given. The machine is named by
--machine (default: $BENCH_MACHINE, else the host name) and described from /proc/cpuinfo,
/proc/meminfo, /etc/os-release and the databases themselves.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.results import ENV

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BACKENDS = ("sqlite", "postgresql")

# In the order they run (that of CI's smoke runs), with the extra arguments of a full run.
BENCHES: dict[str, tuple[str, ...]] = {
    "bulk_members": (),
    "channel_delete": (),
    "estimate_audience": (),
    "contact_sync": (),
    "webhooks": (),
    "broadcast_reads": (),
    "loop_stall": (),
    "events_feed": (),
    "snapshot": (),
    "dispatch": ("--plot", "docs/dispatch-throughput.png"),
    "dispatch_many": (),
    "recording": (),
    "schedule_firing": (),
    "drain": (),
    "statistics_collection": (),
}

Numbers = Mapping[str, float]


@dataclass(frozen=True)
class Check:
    """One target: `test(numbers, backend)`, its ✓/✗ placed after the first `after` in the
    figure (at the end when None)."""

    test: Callable[[Numbers, str], bool]
    after: str | None = None


def at_least(key: str, floor: float, after: str | None = None) -> Check:
    return Check(lambda n, _backend: n[key] >= floor, after)


def at_least_per(key: str, floors: Mapping[str, float], after: str | None = None) -> Check:
    return Check(lambda n, backend: n[key] >= floors[backend], after)


def at_most(key: str, ceiling: float | Mapping[str, float], after: str | None = None) -> Check:
    def test(n: Numbers, backend: str) -> bool:
        limit = ceiling if isinstance(ceiling, int | float) else ceiling[backend]
        return n[key] <= limit

    return Check(test, after)


@dataclass(frozen=True)
class Row:
    id: str  # what the benchmark passes to bench.results.record
    bench: str
    what: str  # also what matches a row of the existing table
    target: str
    checks: tuple[Check, ...] = ()


ROWS = (
    Row(
        "contact_sync.followers",
        "contact_sync",
        "contact sync: 1,000,000 LINE followers from the emulator into contacts (real `serve`, "
        "gRPC)",
        "≤ 60 s",
        (at_most("seconds", 60),),
    ),
    Row(
        "contact_sync.profiles",
        "contact_sync",
        "… then their profiles, paced under LINE's 2,000 profile req/s",
        "(LINE's ceiling: ≥ 500 s)",
    ),
    Row(
        "webhooks.single",
        "webhooks",
        "webhook ingestion, signed LINE events, 1 event per request, 64 in flight",
        "≥ 3,000 events/s",
        (at_least("per_s", 3_000),),
    ),
    Row(
        "webhooks.batched",
        "webhooks",
        "webhook ingestion, 10 events per request, 64 in flight",
        "≥ 3,000 events/s",
        (at_least("per_s", 3_000),),
    ),
    Row(
        "estimate_audience",
        "estimate_audience",
        "EstimateAudience, 1,000,000 contacts, 200,000-member group, every window with and "
        "without the group (180 calls)",
        "p50 ≤ 50 ms, p95 ≤ 100 ms",
        (Check(lambda n, _backend: n["p50_ms"] <= 50 and n["p95_ms"] <= 100),),
    ),
    Row(
        "estimate_audience.many",
        "estimate_audience",
        "EstimateAudience, many merchants at once: 8 LINE channels × 1,000,000 contacts (a "  # noqa: RUF001
        "200,000-member group each), 50 concurrent callers through the real `serve`, random "
        "window and group, 30 s; service CPU per call",
        "p95 ≤ 100 ms",
        (at_most("p95_ms", 100),),
    ),
    Row(
        "broadcast_reads.get",
        "broadcast_reads",
        "GetBroadcast, 50 calls in flight (real `serve`, grpc.aio client)",
        "≥ 1,500 calls/s",
        (at_least("per_s", 1_500),),
    ),
    Row(
        "broadcast_reads.list",
        "broadcast_reads",
        "ListBroadcasts, 20 per page, 50 calls in flight",
        "≥ 1,500 calls/s",
        (at_least("per_s", 1_500),),
    ),
    Row(
        "loop_stall",
        "loop_stall",
        "event-loop stall (longest lag of a 10 ms ticker in `serve`, from /metrics) while 20 "
        "callers send 10,000-contact and 100,000-id batches and 2 send 16 MB without a token, "
        "30 s; RSS before → peak → after",
        "stall ≤ 50 ms, RSS bounded",
        (at_most("stall_ms", 50, after=" ms"),),
    ),
    Row(
        "events_feed.list",
        "events_feed",
        "Message Center feed: one consumer paging ListEvents (1,000 per page) through 600,000 "
        "events of 400,000 delivered recipients (real `serve`); service CPU-s per 100,000 events",
        "≥ 100,000 events/s",
        (at_least("per_s", 100_000, after=" events/s"),),
    ),
    Row(
        "events_feed.watch_batches",
        "events_feed",
        "… one consumer reading WatchEventBatches (many events per message) from the start",
        "≥ 100,000 events/s",
        (at_least("per_s", 100_000, after=" events/s"),),
    ),
    Row(
        "events_feed.watch",
        "events_feed",
        "… one consumer reading WatchEvents (a message per event), its first 50,000 events",
        "(gRPC's cost per message bounds it)",
    ),
    Row(
        "events_feed.live",
        "events_feed",
        "… while a broadcast to 500,000 LINE followers sends (emulator in its own process), a "
        "consumer tailing WatchEventBatches: dispatch rate with it vs. a broadcast alone, and "
        "how long after SENT the consumer has every event",
        "dispatch ≥ 97 % of LINE's 200 req/s with the consumer",
        (at_least("watched_req_per_s", 194, after=" req/s"),),
    ),
    Row(
        "snapshot",
        "snapshot",
        'recipient snapshot of 1,000,000 contacts ("all contacts": 921,212 recipients, 1,843 '
        "batches of 500, one transaction)",
        "≤ 3 s SQLite, ≤ 5 s PostgreSQL",
        (at_most("seconds", {"sqlite": 3, "postgresql": 5}),),
    ),
    Row(
        "dispatch.throughput",
        "dispatch",
        "dispatch: one broadcast (text + image) to 1,000,000 LINE followers through the real "
        "`serve`, emulator in its own process",
        "≥ 97 % of LINE's 200 multicast req/s, a handful of 429s, peak RSS ≤ 300 MB",
        (at_least("share", 0.97, after=" %"), at_most("rss_mb", 300, after=" MB")),
    ),
    Row(
        "dispatch.vs_sdk",
        "dispatch",
        "dispatch vs. the loop a user would write (`line-bot-sdk` `MessagingApi.multicast`, 500 "
        "ids, one after another), 30 ms per request, 200,000 recipients each, first request to "
        "last",
        "≥ 6× the loop",  # noqa: RUF001
        (at_least("ratio", 6, after="×"),),  # noqa: RUF001
    ),
    Row(
        "dispatch_many.k1",
        "dispatch_many",
        "many merchants at once: 1 channel × 100,000 followers, sent through the real `serve`, "  # noqa: RUF001
        "emulator at 30 ms in its own process; aggregate multicast req/s (share of a bare "
        "`aiohttp` loop at the same pace, no database), channels min/median/max, service "
        "CPU-s per 1,000 requests (snapshot included)",
        "single channel no slower than `dispatch`",
    ),
    Row(
        "dispatch_many.k8",
        "dispatch_many",
        "… 8 channels × 100,000 followers, all sent at the same moment",  # noqa: RUF001
        "≥ 1,200 req/s SQLite, ≥ 1,000 PostgreSQL; no channel < 80 % of the median; "
        "≤ 0.6 CPU-s per 1,000",
        (
            at_least_per("req_per_s", {"sqlite": 1200, "postgresql": 1000}, after=" req/s"),
            at_least("min_share", 0.8, after="; channels"),
            at_most("cpu_per_1000", 0.6, after=" CPU-s"),
        ),
    ),
    Row(
        "dispatch_many.k32",
        "dispatch_many",
        "… 32 channels × 25,000 followers",  # noqa: RUF001
        "no lower than 8 channels",
    ),
    Row(
        "dispatch_many.idle",
        "dispatch_many",
        "idle replica: 1,000 connected channels, nothing to send, one minute",
        "≤ 2 % of a core",
        (at_most("core_share", 0.02, after=" of a core"),),
    ),
    Row(
        "recording.k8",
        "recording",
        "the database's share of sending, alone: 8 channels × 100,000 recipients, batches of 500 "  # noqa: RUF001
        "claimed 8 at a time per channel and recorded as accepted in group commits of 16, in one "
        "thread (no channel, HTTP or event loop); per 1,000 batches, median of 3",
        "(what the writes alone allow a replica)",
    ),
    Row(
        "recording.k32",
        "recording",
        "… 32 channels × 25,000 recipients",  # noqa: RUF001
        "(what the writes alone allow a replica)",
    ),
    Row(
        "schedule_firing",
        "schedule_firing",
        "scheduled broadcasts: 1,000 due at the same second on one replica (real `serve`, LINE "
        "emulator in its own process, 5 followers each); lateness from `schedule_time` to "
        "`send_time`, and the service's CPU-s while firing",
        "p99 ≤ 1 s",
        (at_most("p99_s", 1.0, after=" ms"),),
    ),
    Row(
        "drain.restarts",
        "drain",
        "drain on deploy: two replicas on PostgreSQL sending one broadcast to 1,000,000 LINE "
        "followers (real `serve`, emulator in its own process), each restarted in turn "
        "(SIGTERM, start again) mid-send; the longest pause between accepted requests at the "
        "emulator, and batches sent again",
        "every recipient exactly once, pause ≤ 2 s",
        (at_most("gap_s", 2.0, after=" s"),),
    ),
    Row(
        "bulk_members.members",
        "bulk_members",
        "add 100,000 customer-group members in one call",
        "set-based",
    ),
    Row(
        "bulk_members.contacts",
        "bulk_members",
        "import 10,000 contacts in one call (merge by external id)",
        "set-based",
    ),
    Row(
        "bulk_members.updates",
        "bulk_members",
        "import the same 10,000 contacts again, newer (each contact and its group row updated)",
        "set-based",
    ),
    Row(
        "channel_delete",
        "channel_delete",
        "DeleteChannel of a channel with 1,000,000 contacts (half in a customer group) while "
        "another merchant imports 20 contacts at a time; its contacts forgotten in the "
        "background, 500 a transaction",
        "no other merchant waits on it",
    ),
    Row(
        "statistics_collection",
        "statistics_collection",
        "statistics collection: 10,000 broadcasts sent over the last 14 days on 100 channel "
        "accounts, two replicas, a day of collection (simulated time, a channel answering at "
        "once, plus LINE's requests through the real plugin measured apart); the service's CPU "
        "per hour of collection, and the most reads of one account in any hour against LINE's "
        "ceiling (60)",
        "< 5 % of a core, reads ≤ the ceiling",
        (
            at_most("core_share", 0.05, after=" of a core"),
            Check(lambda n, _backend: n["most_per_hour"] <= n["ceiling"]),
        ),
    ),
)
assert {row.bench for row in ROWS} == set(BENCHES)

HEADER = "| what | target | SQLite | PostgreSQL | machine | date | command |"


@dataclass
class Line:
    """One row of the table as shown."""

    what: str
    target: str
    cells: dict[str, str]  # backend -> figure with ✓/✗
    machine: str
    date: str
    command: str  # in full, never "same"


# --- running -------------------------------------------------------------------------------


def command(bench: str, smoke: bool) -> list[str]:
    return ["python", "-m", f"bench.{bench}", *(["--smoke"] if smoke else BENCHES[bench])]


def run(benches: list[str], smoke: bool) -> tuple[list[dict], list[str]]:
    """Every benchmark in turn: the results they recorded, and the names of those that failed."""
    results: list[dict] = []
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for bench in benches:
            path = Path(tmp) / f"{bench}.jsonl"
            argv = command(bench, smoke)
            print(f"== {' '.join(argv)}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, *argv[1:]],
                cwd=ROOT,
                env={**os.environ, ENV: str(path), "PYTHONUNBUFFERED": "1"},
                stdout=sys.stderr,
                check=False,
            )
            took = time.perf_counter() - started
            if done.returncode != 0:
                failed.append(bench)
                print(f"== {bench} FAILED (exit {done.returncode})", file=sys.stderr)
            print(f"== {bench}: {took:.0f} s", file=sys.stderr, flush=True)
            if path.exists():
                results += [json.loads(line) for line in path.read_text().splitlines() if line]
    return results, failed


def figure(row: Row, result: dict, smoke: bool) -> str:
    text = result["figure"]
    if not smoke and result["numbers"]:  # (a backend a benchmark cannot run on has none)
        for check in row.checks:
            mark = " ✓" if check.test(result["numbers"], result["backend"]) else " ✗"
            at = text.find(check.after) if check.after else -1
            at = len(text) if at < 0 else at + len(check.after or "")
            text = text[:at] + mark + text[at:]
    return text


# --- the machine ---------------------------------------------------------------------------


def _cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    name = re.sub(r"\s+", " ", model.group(1)).strip() if model else platform.processor()
    for noise in ("(R)", "(TM)", "(tm)", " Processor", " CPU"):
        name = name.replace(noise, "")
    virtual = re.search(r"^flags\s*:.*\bhypervisor\b", info, re.MULTILINE)
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{count} {'vCPU' if virtual else 'CPU'} {name or 'unknown CPU'}".strip()


def _ram() -> str:
    meminfo = Path("/proc/meminfo")
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text() if meminfo.exists() else "")
    return f"{int(total.group(1)) / 1024**2:.0f} GiB RAM" if total else "RAM unknown"


def _os() -> str:
    release = Path("/etc/os-release")
    text = release.read_text() if release.exists() else ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text, re.MULTILINE)
    name = pretty.group(1) if pretty else platform.system()
    return f"{name}, {platform.system()} {platform.release()}"


def _filesystem(path: str) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    best, kind = "", "?"
    mounts = Path("/proc/mounts")
    for line in mounts.read_text().splitlines() if mounts.exists() else []:
        _, point, fstype, *_ = line.split()
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, fstype
    return kind


def _sqlite() -> str:
    """SQLite's version and the journal settings the service's own connections get."""
    from broadcaster.store.database import Database

    settings = ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            db = Database.from_url(f"sqlite:///{Path(tmp) / 'probe.db'}")
            with db.engine.connect() as conn:
                journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            db.close()
            level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync)
            settings = f" ({str(journal).upper()}, synchronous={level})"
        except Exception as e:  # describe the machine anyway
            settings = f" (settings unknown: {e})"
    tmpdir = tempfile.gettempdir()
    return f"SQLite {sqlite3.sqlite_version}{settings} in {tmpdir} on {_filesystem(tmpdir)}"


def _postgresql() -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    from tests.databases import ADMIN_URL, _libpq

    url = make_url(ADMIN_URL)
    try:
        with psycopg.connect(_libpq(ADMIN_URL), connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return f"PostgreSQL: none answering at {url.host}:{url.port or 5432}"
    version = str(row[0]).split()[0] if row else "?"
    local = url.host in (None, "", "localhost", "127.0.0.1", "::1") or url.host.startswith("/")
    where = f"on this host over {url.host or 'a Unix socket'}" if local else f"at {url.host}"
    return f"PostgreSQL {version} {where}"


def describe_machine(name: str) -> str:
    cpu = _cpu()
    count = cpu.split()[0]
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    text = (
        f"Machine **{name}**: {cpu}, {_ram()}, {_os()}, Python {platform.python_version()}, "
        f"{_sqlite()}, {_postgresql()}. Client, service and LINE emulator share the {count} "
        f"CPUs, so service-side figures are conservative (load average {load} when the run "
        "started)."
    )
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


# --- the page ------------------------------------------------------------------------------


def section(doc: str, name: str) -> tuple[int, int]:
    """Where the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` starts and ends."""
    opening, closing = f"<!-- bench:{name} -->\n", f"\n<!-- /bench:{name} -->"
    start, end = doc.find(opening), doc.find(closing)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC.relative_to(ROOT)}: missing {opening.strip()} … {closing.strip()}")
    return start + len(opening), end


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def previous_lines(table: str) -> dict[str, Line]:
    """The rows of the existing table, by their `what`."""
    lines: dict[str, Line] = {}
    last_command = ""
    for text in table.splitlines()[2:]:  # after the header and the |---| line
        cells = _cells(text)
        if len(cells) != 7:
            continue
        what, target, sqlite_cell, pg_cell, machine, date, cmd = cells
        cmd = last_command if cmd == "same" else cmd.strip("`")
        last_command = cmd
        lines[what] = Line(
            what, target, {"sqlite": sqlite_cell, "postgresql": pg_cell}, machine, date, cmd
        )
    return lines


def previous_machines(text: str) -> dict[str, str]:
    """The machine paragraphs of the existing page, by machine name."""
    machines = {}
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        named = re.match(r"Machine \*\*(.+?)\*\*", paragraph)
        if named:
            machines[named.group(1)] = paragraph.strip()
    return machines


GENERATED_END = "when the run started)."  # the last words of `describe_machine`'s text


def with_remarks(described: str, previous: str | None) -> str:
    """A machine's new paragraph: `described`, then the remarks written by hand after the
    generated description of its previous paragraph (what the machine's pace was like, which
    rows were measured on which code), kept for the rows of it that were not run again."""
    flowed = "" if previous is None else " ".join(previous.split())
    remarks = flowed.split(GENERATED_END, 1)[1].strip() if GENERATED_END in flowed else ""
    if not remarks:
        return described
    text = " ".join(described.split()) + " " + remarks
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def render_table(lines: list[Line]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = [HEADER, "|---|---|---|---|---|---|---|"]
    last = None
    for line in lines:
        cmd = "same" if line.command == last else f"`{line.command}`"
        last = line.command
        cells = [line.what, line.target, line.cells["sqlite"], line.cells["postgresql"]]
        cells += [line.machine, line.date, cmd]
        out.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(out)


def build(
    doc: str, results: list[dict], ran: set[str], smoke: bool, machine: str, described: str
) -> tuple[str, str, list[str]]:
    """The new machine section and table, and warnings (rows of benchmarks run but not
    recorded)."""
    t0, t1 = section(doc, "table")
    before = previous_lines(doc[t0:t1])
    m0, m1 = section(doc, "machine")
    machines = previous_machines(doc[m0:m1])
    today = datetime.date.today().isoformat()
    by_row: dict[str, dict[str, dict]] = {}
    for result in results:
        by_row.setdefault(result["row"], {})[result["backend"]] = result
    lines, warnings = [], []
    for row in ROWS:
        got = by_row.get(row.id, {})
        cmd = "./dev run " + " ".join(command(row.bench, smoke))
        if row.bench in ran and all(b in got for b in BACKENDS):
            cells = {b: figure(row, got[b], smoke) for b in BACKENDS}
            lines.append(Line(row.what, row.target, cells, machine, today, cmd))
            continue
        if row.bench in ran:
            missing = ", ".join(b for b in BACKENDS if b not in got)
            warnings.append(f"{row.id}: no result for {missing}; previous figures kept")
        old = before.get(row.what)
        if old is not None:
            lines.append(Line(row.what, row.target, old.cells, old.machine, old.date, old.command))
        else:
            lines.append(Line(row.what, row.target, dict.fromkeys(BACKENDS, "—"), "", "", cmd))
    machines[machine] = with_remarks(described, machines.get(machine))
    named = list(dict.fromkeys(line.machine for line in lines if line.machine in machines))
    machine_text = "\n\n".join(machines[name] for name in named)
    return machine_text, render_table(lines), warnings


def replace(doc: str, machine_text: str, table: str) -> str:
    m0, m1 = section(doc, "machine")
    doc = doc[:m0] + machine_text + doc[m1:]
    t0, t1 = section(doc, "table")
    return doc[:t0] + table + doc[t1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="short CI forms; prints only")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), metavar="NAME")
    parser.add_argument(
        "--write",
        metavar="PATH",
        help="where the regenerated page goes, '-' for stdout (default: docs/benchmarks.md on a "
        "full run, stdout with --smoke)",
    )
    parser.add_argument(
        "--machine",
        default=os.environ.get("BENCH_MACHINE") or socket.gethostname().split(".")[0],
        help="name of this machine in the table (default: $BENCH_MACHINE, else the host name)",
    )
    args = parser.parse_args()
    benches = [b for b in BENCHES if not args.only or b in args.only]
    doc = DOC.read_text()
    section(doc, "machine")  # fail before running anything, not after
    section(doc, "table")
    described = describe_machine(args.machine)
    results, failed = run(benches, args.smoke)
    machine_text, table, warnings = build(
        doc, results, set(benches), args.smoke, args.machine, described
    )
    target = args.write or ("-" if args.smoke else str(DOC))
    print(f"\n{machine_text}\n\n{table}")
    if args.smoke:
        print("\n(--smoke: small sizes, not comparable with the targets, so no ✓/✗)")
    if target != "-":
        Path(target).write_text(replace(doc, machine_text, table))
        print(f"\nwrote {target}", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
