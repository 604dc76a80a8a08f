"""Load benchmark of the human-study server (paper Appendix G collects 6,000 + 30,000 answers).

Starts ``hvqeval study serve`` (gunicorn) on 127.0.0.1, lets N simulated raters (threads with
keep-alive connections, see ``study_app.loadtest``) enter, consent and answer until the study
is full, then checks the database: every item has exactly k answers from k distinct raters,
no answer lost (client-side "stored" count == rows), none doubled. Reports answers/s and the
p50/p99 latency of "next task" and "submit", for SQLite and PostgreSQL side by side.

By default the study is the size of the paper's rating study (2 models x 20 classes x 50
images x 3 = 6,000 answers); the 200 raters open the link spread over 2 s and look at each
image for 0.2-0.6 s (mean 400 ms) before answering. ``--arrival-s 0`` sends them all in at the
same instant, ``--think-ms 0`` makes them answer at once (a closed loop: latency = raters /
throughput).

    python benchmarks/study_load.py --raters 200 --database sqlite --database postgresql

Bounded: loopback only, at most --raters threads, --time-limit seconds per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hvqeval.sample_set import SampleSetWriter  # noqa: E402
from study_app.create import SourceSpec, StudySettings, create_study  # noqa: E402
from study_app.db import dispose_engines, get_engine, read_session  # noqa: E402
from study_app.loadtest import LocalServer, process_tree_cpu_seconds, run_raters  # noqa: E402
from study_app.server import resolve_concurrency  # noqa: E402
from study_app.schema import Answer, Slot  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_set(path: Path, model: str, classes: int, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    writer = SampleSetWriter(path, model=model, image_size=16, seed=seed)
    for c in range(classes):
        for _ in range(per_class):
            writer.add(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), c, f"class{c} ({c})")
    return writer.close()


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
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), cleanup


def cpu_ticks() -> tuple[int, int, int]:
    """(all, idle, stolen) CPU ticks of this machine so far. The busy share says how close the
    run came to the machine's capacity (server, load generator and PostgreSQL share its cores);
    the share stolen by other virtual machines on the same host tells how far the run was
    disturbed from outside."""
    with open("/proc/stat") as fh:
        # user nice system idle iowait irq softirq steal
        values = [int(v) for v in fh.readline().split()[1:9]]
    return sum(values), values[3] + values[4], values[7]


def cpu_model() -> str:
    """The processor's name, so that a recorded run says which machine it came from."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_one(kind: str, args, tmp: Path) -> dict:
    url, cleanup = database(kind, tmp, args.postgres_url)
    workers, threads = resolve_concurrency(url, args.workers, args.threads)  # as `hvqeval study serve`
    try:
        ff = make_set(tmp / "ff", "bench_ff", args.classes, args.per_class, 1)
        msp = make_set(tmp / "msp", "bench_msp", args.classes, args.per_class, 2)
        items = 2 * args.classes * args.per_class
        needed = items * args.k
        # One task more than an even share: near the end a rater may find the open slots leased
        # to others or on items they already rated and leave early, as on a crowd-sourcing
        # platform; the others' spare task fills the study.
        tasks = -(-needed // args.raters) + 1
        summary = create_study(url, StudySettings(
            name=f"bench-{kind}", kind="rating",
            sources=(SourceSpec("ff", str(ff.path)), SourceSpec("msp", str(msp.path))),
            classes=args.classes, per_class=args.per_class, answers_per_item=args.k, tasks_per_rater=tasks), tmp)
        dispose_engines()
        with LocalServer(url, str(tmp), workers=workers, threads=threads,
                         worker_class=args.worker_class) as server:
            server_cpu0, client_cpu0 = process_tree_cpu_seconds(server.process.pid), time.process_time()
            ticks0 = cpu_ticks()
            result = run_raters("127.0.0.1", server.port, summary.public_id, args.raters, "rating",
                                time_limit=args.time_limit, fetch_images=args.fetch_images, think_ms=args.think_ms,
                                arrival_s=args.arrival_s)
            server_cpu = process_tree_cpu_seconds(server.process.pid) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
            ticks = [b - a for a, b in zip(ticks0, cpu_ticks())]
        with read_session(get_engine(url)) as s:
            rows = s.execute(select(Answer.item_id, Answer.rater_id)).all()
            unfilled = s.scalar(select(func.count()).select_from(Slot).where(Slot.filled.is_(False)))
        per_item = Counter(i for i, _ in rows)
        return {
            "database": kind, "raters": args.raters, "think_ms": args.think_ms, "arrival_s": args.arrival_s, "worker_class": args.worker_class, "workers": workers, "threads": threads,
            "answers_needed": needed, "answers_stored": len(rows), "client_stored": result.answers,
            "lost": result.answers - len(rows), "duplicates": len(rows) - len(set(rows)),
            "items_over_k": sum(1 for n in per_item.values() if n > args.k), "unfilled_slots": unfilled,
            "errors": len(result.errors), "seconds": round(result.seconds, 2),
            "answers_per_s": round(len(rows) / result.seconds, 1),
            "next_p50_ms": round(result.percentile("next", 50), 1), "next_p99_ms": round(result.percentile("next", 99), 1),
            "submit_p50_ms": round(result.percentile("answer", 50), 1),
            "submit_p99_ms": round(result.percentile("answer", 99), 1),
            # CPU per stored answer (both calls), independent of what else runs on the machine;
            # the server's PostgreSQL processes are not included.
            "server_cpu_ms_per_answer": round(1000 * server_cpu / max(1, len(rows)), 2),
            "client_cpu_ms_per_answer": round(1000 * client_cpu / max(1, len(rows)), 2),
            "load_average": round(os.getloadavg()[0], 1),
            "machine_busy_pct": round(100 * (ticks[0] - ticks[1]) / max(1, ticks[0]), 1),
            "cpu_stolen_pct": round(100 * ticks[2] / max(1, ticks[0]), 1),
            "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
            "first_errors": result.errors[:3],
        }
    finally:
        dispose_engines()
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raters", type=int, default=200)
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=os.environ.get("HVQEVAL_TEST_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("-k", type=int, default=3, help="answers per item")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers (default as `hvqeval study serve`: 2 x cores + 1 of one thread "
                             "on SQLite, 2 x cores of two threads on PostgreSQL)")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker (default: see --workers)")
    parser.add_argument("--worker-class", choices=["gthread", "sync"], default="gthread")
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--think-ms", type=float, default=400.0,
                        help="mean pause of a rater before answering (0: answer at once, a closed loop)")
    parser.add_argument("--arrival-s", type=float, default=2.0,
                        help="raters open the study link evenly spread over this many seconds (0: all at once)")
    parser.add_argument("--fetch-images", action="store_true", help="also GET each task's images")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if (args.workers is not None and args.workers < 1) or (args.threads is not None and args.threads < 1):
        parser.error("--workers and --threads must be at least 1")
    if not 1 <= args.raters <= 500:
        parser.error("--raters must be between 1 and 500 (the load stays bounded)")
    results = []
    for kind in args.database or ["sqlite", "postgresql"]:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_one(kind, args, Path(tmp)))
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print("| database | workers x threads | raters | arrival s | think ms | answers | s | answers/s | next p50 / p99 ms "
          "| submit p50 / p99 ms | lost | dup | errors | server / client CPU ms per answer | machine busy | CPU stolen |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['database']} | {r['workers']} x {r['threads']} | {r['raters']} | {r['arrival_s']:g} | {r['think_ms']:g} | "
              f"{r['answers_stored']}/{r['answers_needed']} | "
              f"{r['seconds']} | {r['answers_per_s']} | {r['next_p50_ms']} / {r['next_p99_ms']} | "
              f"{r['submit_p50_ms']} / {r['submit_p99_ms']} | {r['lost']} | {r['duplicates']} | {r['errors']} | "
              f"{r['server_cpu_ms_per_answer']} / {r['client_cpu_ms_per_answer']} | {r['machine_busy_pct']}% | "
              f"{r['cpu_stolen_pct']}% |")
        for err in r["first_errors"]:
            print(f"  error: {err}", file=sys.stderr)
    print(f"\n{results[0]['cpu']}", file=sys.stderr)


if __name__ == "__main__":
    main()
