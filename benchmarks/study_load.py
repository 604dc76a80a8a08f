"""Realistic load benchmark of the human-study server, with locust as the raters.

Starts ``hvqeval study serve`` (gunicorn, its default workers and threads) on 127.0.0.1 over a
fresh rating study, then runs locust (``benchmarks/study_locustfile.py``, headless) with
``--raters`` raters arriving evenly over ``--arrival-s`` seconds; each rater enters, consents,
and answers until the study is full, thinking ``--think-min``..``--think-max`` seconds (uniform)
before each answer and fetching each task's images, as a browser does; like a new browser, it
also fetches what the pages name (stylesheet, icon, script, the instructions' example images)
and keeps them as a browser's cache would. Afterwards the database is checked: every item has
exactly k answers from k distinct raters, every answer a rater was told was stored is one row
(none lost, none doubled). Reported per request kind: count, failures, p50/p95/p99 latency;
answers/s; the latency second by second; and the CPU time (user + system) of the server's
processes, PostgreSQL's and the load generator's per answer stored,
which says what the machine's two cores are spent on.

The target (docs/BENCHMARKS.md): 500 raters over 10 s, think 2-4 s, p99 of every rater
request < 250 ms, 0 errors, 0 lost, 0 duplicates, exactly k per item, on SQLite and PostgreSQL.
``--think-min 0 --think-max 0`` with fewer raters measures the peak answers/s instead.

    pip install -e '.[bench]'
    python benchmarks/study_load.py --database sqlite --database postgresql

Bounded: loopback only, --time-limit seconds of load per database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hvqeval.sample_set import SampleSetWriter
from study_app.create import SourceSpec, StudySettings, create_study

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LOCUSTFILE = REPO / "benchmarks" / "study_locustfile.py"


def make_set(path: Path, model: str, classes: int, per_class: int, seed: int):
    """``per_class`` random images of each class, and one more of class 0: the instructions'
    example of this model (a study shows one image of each source that is no task)."""
    rng = np.random.default_rng(seed)
    writer = SampleSetWriter(path, model=model, image_size=16, seed=seed)
    for c in range(classes):
        for _ in range(per_class + (c == 0)):
            writer.add(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), c, f"class{c} ({c})")
    return writer.close()


def make_study(url: str, tmp: Path, args):
    """The benchmark's rating study: two generated sample sets (``args.classes`` classes of
    ``args.per_class`` images), ``args.k`` raters per image, an example image of each model in
    the instructions (as every study has); ``create_study``'s summary."""

    ff = make_set(tmp / "ff", "bench_ff", args.classes, args.per_class, 1)
    msp = make_set(tmp / "msp", "bench_msp", args.classes, args.per_class, 2)
    return create_study(
        url,
        StudySettings(
            name="bench",
            kind="rating",
            sources=(SourceSpec("ff", str(ff.path)), SourceSpec("msp", str(msp.path))),
            classes=args.classes,
            per_class=args.per_class,
            answers_per_item=args.k,
            tasks_per_rater=args.tasks_per_rater,
        ),
        tmp,
    )


def database(kind: str, tmp: Path, pg_url: str):
    """(url, cleanup) for a fresh database: a SQLite file or a new PostgreSQL schema."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.sqlite3'}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"study_bench_{os.getpid()}_{int(time.time())}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def cleanup():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return make_url(pg_url).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    ).render_as_string(hide_password=False), cleanup


def cpu_ticks() -> tuple[int, int, int]:
    """(all, idle, stolen) CPU ticks of this machine so far: how busy it was during a run, and
    how much of its cores' time the hypervisor of a virtual machine gave to other guests
    ("steal": the machine's pace, which no process here can change)."""
    with open("/proc/stat") as fh:
        # user nice system idle iowait irq softirq steal
        values = [int(v) for v in fh.readline().split()[1:9]]
    return sum(values), values[3] + values[4], values[7]


def process_cpu_s(server_session: int) -> dict[str, float]:
    """CPU seconds used so far (user + system) by the server's processes (gunicorn's session)
    and by PostgreSQL's processes: where the machine's CPU goes, read before and after a run."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"server": 0.0, "database": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        name, fields = (
            text[text.index("(") + 1 : text.rindex(")")],
            text[text.rindex(")") + 2 :].split(),
        )
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if int(fields[3]) == server_session:  # the session gunicorn was started in
            used["server"] += seconds
        elif name == "postgres":
            used["database"] += seconds
    return used


def host_speed_s() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this (shared, virtual) machine runs
    Python right now. The same machine has given 0.8 s and 1.2 s within an hour; latencies
    near saturation move with it, so each run records it."""
    started, total = time.process_time(), 0
    for i in range(5_000_000):
        total += i
    return round(time.process_time() - started, 2)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def start_server(
    url: str,
    tmp: Path,
    port: int,
    workers: int | None = None,
    threads: int | None = None,
    rate_limit_storage: str = "memory://",
) -> subprocess.Popen:
    env = {
        **os.environ,
        "HVQEVAL_RATE_LIMIT_STORAGE": rate_limit_storage,
        "HVQEVAL_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "HVQEVAL_RATE_LIMIT_RATER": "1000/60",
        "HVQEVAL_RATE_LIMIT_IP": "1000000/60",
    }
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - the server writes to it while it runs
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hvqeval",
            "study",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--database-url",
            url,
            "--instance-dir",
            str(tmp / "instance"),
            *(["--workers", str(workers)] if workers else []),
            *(["--threads", str(threads)] if threads else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600  # serve renders every image first (~30 s for 2,000)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError((tmp / "server.log").read_text())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def latencies(csv_prefix: Path) -> dict:
    """Per request name: count, failures, p50/p95/p99/max ms (locust's ``--csv`` statistics)."""
    out = {}
    with open(f"{csv_prefix}_stats.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["Name"]] = {
                "count": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "p50_ms": float(row["50%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
                "max_ms": float(row["Max Response Time"]),
            }
    return out


def shares(before: tuple[int, int, int], after: tuple[int, int, int]) -> tuple[float, float]:
    """(busy, stolen) share of the machine's ticks between two ``cpu_ticks`` readings (stolen
    ticks count as busy)."""
    ticks = max(1, after[0] - before[0])
    return 1 - (after[1] - before[1]) / ticks, (after[2] - before[2]) / ticks


class TickSampler(threading.Thread):
    """Reads the machine's CPU ticks once a second while the load runs: (wall time, ticks)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, tuple[int, int, int]]] = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.samples.append((time.time(), cpu_ticks()))
            self.done.wait(1.0)

    def by_second(self, start: float) -> dict[int, tuple[float, float]]:
        """{second from ``start``: (busy share, stolen share) of the sample interval that began
        in it}."""
        return {
            int(t0 - start): shares(a, b)
            for (t0, a), (_t1, b) in zip(self.samples, self.samples[1:])
        }


def timeline(request_log: Path, sampler: TickSampler | None = None) -> list[dict]:
    """Second by second from the first request: requests ended, arrival requests among them
    (entry, consent, first task), p50/p99 ms of all of them, and how busy the machine was and
    how much of it was stolen (``sampler``)."""
    rows = [line.split("\t") for line in request_log.read_text().splitlines() if line]
    if not rows:
        return []
    start = min(float(r[0]) for r in rows)
    machine = sampler.by_second(start) if sampler is not None else {}
    seconds: dict[int, list[tuple[str, float]]] = {}
    for ended, name, ms in rows:
        seconds.setdefault(int(float(ended) - start), []).append((name, float(ms)))
    out = []
    for second in sorted(seconds):
        ms = np.array([m for _, m in seconds[second]])
        out.append(
            {
                "second": second,
                "requests": len(ms),
                "arrival_requests": sum(
                    name not in ("api/answer", "image") for name, _ in seconds[second]
                ),
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1),
            }
        )
        if second in machine:
            out[-1]["busy"], out[-1]["stolen"] = (round(v, 2) for v in machine[second])
    return out


def run_one(kind: str, args, tmp: Path) -> dict:
    from sqlalchemy import func, select

    from study_app.db import make_engine, session_scope
    from study_app.schema import Answer, Assignment, Slot

    url, cleanup = database(kind, tmp, args.postgres_url)
    server = None
    try:
        needed = 2 * args.classes * args.per_class * args.k
        summary = make_study(url, tmp, args)
        port = 20000 + os.getpid() % 20000
        server = start_server(url, tmp, port, args.workers, args.threads, args.rate_limit_storage)
        result_file, csv_prefix = tmp / "locust-totals.json", tmp / "locust"
        env = {
            **os.environ,
            "STUDY_PUBLIC_ID": summary.public_id,
            "STUDY_KIND": "rating",
            "THINK_MIN_S": str(args.think_min),
            "THINK_MAX_S": str(args.think_max),
            "RATERS": str(args.raters),
            "ARRIVAL_S": str(args.arrival_s),
            "RESULT_FILE": str(result_file),
            "REQUEST_LOG": str(tmp / "requests.tsv"),
        }
        speed = host_speed_s()
        cpu0, children0 = process_cpu_s(server.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks0, started = cpu_ticks(), time.monotonic()
        sampler = TickSampler()
        sampler.start()
        load = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                f"http://127.0.0.1:{port}",
                "-u",
                str(args.raters),
                "-r",  # every user starts at once and waits for its arrival time (even arrivals)
                str(args.raters),
                "--run-time",
                f"{int(args.time_limit)}s",
                "--csv",
                str(csv_prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
                "--stop-timeout",
                "10",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.time_limit + 120,
            check=False,
        )
        seconds = time.monotonic() - started  # arrival of the first rater to the last one's code
        ticks1 = cpu_ticks()
        sampler.done.set()
        sampler.join()
        cpu1, children1 = process_cpu_s(server.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = {role: round(cpu1[role] - cpu0[role], 1) for role in cpu1}
        cpu_s["load_generator"] = round(
            children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime, 1
        )  # locust, the only child waited for meanwhile
        if kind == "sqlite":  # SQLite works inside the server's processes
            del cpu_s["database"]
        totals = json.loads(result_file.read_text())
        engine = make_engine(url)
        with session_scope(engine) as s:
            rows = s.execute(select(Answer.item_id, Answer.rater_id)).all()
            unfilled = s.scalar(
                select(func.count()).select_from(Slot).where(Slot.filled.is_(False))
            )
            answered_tasks = set(
                s.scalars(
                    select(Assignment.token).join(Answer, Answer.assignment_id == Assignment.id)
                )
            )
        engine.dispose()
        per_item = Counter(item for item, _ in rows)
        told = totals["stored_tasks"]
        stats = latencies(csv_prefix)
        rater_requests = {name: v for name, v in stats.items() if name != "Aggregated"}
        busy, stolen = shares(ticks0, ticks1)
        return {
            "database": kind,
            "raters": args.raters,
            "workers_threads": [args.workers, args.threads],
            "rate_limit_storage": args.rate_limit_storage,
            "arrival_s": args.arrival_s,
            "think_s": [args.think_min, args.think_max],
            "answers_needed": needed,
            "answers_stored": len(rows),
            "told_stored": len(told),
            "lost": len(set(told) - answered_tasks),
            "duplicates": len(told) - len(set(told)) + len(rows) - len(set(rows)),
            "exactly_k": set(per_item.values()) == {args.k}
            and unfilled == 0
            and len(per_item) * args.k == needed,
            "errors": sum(v["failures"] for v in rater_requests.values())
            + (load.returncode not in (0, 1)),
            "seconds": round(seconds, 1),
            "answers_per_s": round(len(rows) / seconds, 1),
            "p99_ms_worst_request": max(v["p99_ms"] for v in rater_requests.values()),
            "requests": stats,
            "timeline": timeline(tmp / "requests.tsv", sampler),
            "machine_busy": round(busy, 2),
            "machine_stolen": round(stolen, 3),
            "cpu_s": cpu_s,
            "cpu_ms_per_answer": {
                role: round(1000 * v / max(1, len(rows)), 2) for role, v in cpu_s.items()
            },
            "host_loop_s": speed,
            "locust_exit": load.returncode,
            "locust_tail": load.stderr[:3000] if load.returncode else "",
        }
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--postgres-url", default=os.environ.get("HVQEVAL_TEST_DATABASE_URL", DEFAULT_PG)
    )
    parser.add_argument("--raters", type=int, default=500)
    parser.add_argument("--arrival-s", type=float, default=10.0)
    parser.add_argument("--think-min", type=float, default=2.0)
    parser.add_argument("--think-max", type=float, default=4.0)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=50, help="images per class and model")
    parser.add_argument("-k", type=int, default=3, help="answers per item")
    parser.add_argument(
        "--tasks-per-rater",
        type=int,
        default=15,
        help="more than the study needs per rater, so the study fills",
    )
    parser.add_argument(
        "--time-limit", type=float, default=180.0, help="seconds of load at most per database"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="serve's --workers [default: serve's own]"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="serve's --threads [default: serve's own]"
    )
    parser.add_argument(
        "--rate-limit-storage",
        default="memory://",
        help="serve's HVQEVAL_RATE_LIMIT_STORAGE, e.g. redis://127.0.0.1:6379/0 [memory://]",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for kind in args.database or ["sqlite"]:
        with tempfile.TemporaryDirectory(prefix=f"study-bench-{kind}-") as tmp:
            results.append(run_one(kind, args, Path(tmp)))
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
        return
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}")
    for r in results:
        print(
            f"{r['database']:10s} {r['answers_stored']}/{r['answers_needed']} answers in {r['seconds']} s "
            f"({r['answers_per_s']} answers/s), worst p99 {r['p99_ms_worst_request']:.0f} ms, errors {r['errors']}, "
            f"lost {r['lost']}, duplicates {r['duplicates']}, exactly k {r['exactly_k']}, "
            f"machine busy {r['machine_busy']:.0%} (stolen {r['machine_stolen']:.1%}), host loop {r['host_loop_s']} s"
        )
        print(
            "    CPU ms per answer stored (its images and the arrivals included): "
            + ", ".join(f"{role} {ms}" for role, ms in r["cpu_ms_per_answer"].items())
        )
        for name, v in r["requests"].items():
            print(
                f"    {name:24s} n={v['count']:6d} fail={v['failures']} p50={v['p50_ms']:.0f} "
                f"p95={v['p95_ms']:.0f} p99={v['p99_ms']:.0f} max={v['max_ms']:.0f} ms"
            )
        worst = sorted(r["timeline"], key=lambda s: s["p99_ms"], reverse=True)[:3]
        print(
            "    slowest seconds: "
            + ", ".join(
                f"{s['second']} s ({s['requests']} requests, {s['arrival_requests']} of "
                f"arrivals, p99 {s['p99_ms']:.0f} ms"
                + (f", {s['stolen']:.0%} stolen" if "stolen" in s else "")
                + ")"
                for s in sorted(worst, key=lambda s: s["second"])
            )
        )


if __name__ == "__main__":
    main()
