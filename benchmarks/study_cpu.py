"""CPU cost of the study server's request cycle, measured in process (no sockets, no gunicorn).

Builds the load benchmark's study (``study_load.py``: 2 models × ``--classes`` × ``--per-class``
images, k answers per item) in a temporary folder, creates the app with ``create_app`` and
drives it with Flask's test client: ``--raters`` raters enter and consent, then take turns
answering (``POST api/answer``, which stores the answer and claims the next task) and fetching
each task's image, until the study is full or ``--answers`` answers are stored. Reports the CPU
time of this process (``time.process_time``: the server's work plus the test client's, and on
SQLite the database's; PostgreSQL's own processes are not counted) per answer and per image
request, and per rater arriving (entry link, consent page, consent, task page, first task).
CPU time, unlike wall time, hardly depends on what else runs on the machine.

    PYTHONPATH=$PWD python benchmarks/study_cpu.py                       # SQLite
    PYTHONPATH=$PWD python benchmarks/study_cpu.py --database postgresql
    PYTHONPATH=$PWD python benchmarks/study_cpu.py --profile 25          # and cProfile's top 25

Images are rendered ahead, as ``hvqeval study serve`` does before it binds, unless
``--no-prerender`` (then every first view encodes its PNG in the request).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from study_load import DEFAULT_PG, database, make_study  # noqa: E402

from study_app import create_app  # noqa: E402

CSRF_RE = re.compile(rb'name="csrf-token" content="([^"]+)"')
FIRST_TASK_RE = re.compile(rb'<script type="application/json" id="first-task">(.*?)</script>', re.S)


def enter(client, public_id: str, participant: str) -> tuple[str, dict]:
    """(CSRF token, first task reply) of a rater who entered and consented."""
    page = client.get(f"/s/{public_id}/?PROLIFIC_PID={participant}", follow_redirects=True)
    csrf = CSRF_RE.search(page.data).group(1).decode()
    task_page = client.post(
        f"/s/{public_id}/consent",
        data={"agree": "yes", "csrf_token": csrf},
        follow_redirects=True,
    )
    return csrf, json.loads(FIRST_TASK_RE.search(task_page.data).group(1))


def run(args, tmp: Path) -> dict:
    url, cleanup = database(args.database, tmp, args.postgres_url)
    try:
        summary = make_study(url, tmp, args)
        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
                "INSTANCE_DIR": str(tmp / "instance"),
                "RATE_LIMIT_RATER": "1000/60",
                "RATE_LIMIT_IP": "1000000/60",
            }
        )
        prerender_s = None
        if not args.no_prerender:
            from study_app.images import prerender

            started = time.monotonic()
            prerender(app)
            prerender_s = time.monotonic() - started
        public_id = summary.public_id
        raters = []
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None and args.profile_arrival:
            profiler.enable()
        t0 = time.process_time()
        for n in range(args.raters):
            client = app.test_client()
            csrf, current = enter(client, public_id, f"cpu-{n}")
            raters.append([client, csrf, current])
        arrival_cpu = time.process_time() - t0
        if profiler is not None and args.profile_arrival:
            profiler.disable()

        answer_cpu = image_cpu = 0.0
        answers = images = 0
        if profiler is not None and not args.profile_arrival:
            profiler.enable()
        while answers < args.answers and any(r[2].get("state") == "task" for r in raters):
            for rater in raters:
                client, csrf, current = rater
                if current.get("state") != "task" or answers >= args.answers:
                    continue
                t0 = time.process_time()
                for image in current["images"]:
                    got = client.get(image)
                    assert got.status_code == 200, got.status_code
                t1 = time.process_time()
                reply = client.post(
                    f"/s/{public_id}/api/answer",
                    json={"task": current["task"], "answer": 3, "response_ms": 2500},
                    headers={"X-CSRFToken": csrf},
                )
                t2 = time.process_time()
                assert reply.status_code == 200, reply.data
                image_cpu += t1 - t0
                answer_cpu += t2 - t1
                images += len(current["images"])
                answers += 1
                rater[2] = reply.get_json()["next"]
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(
                args.profile
            )
        app.extensions["study_engine"].dispose()
        return {
            "database": args.database,
            "answers": answers,
            "images": images,
            "prerender_s": None if prerender_s is None else round(prerender_s, 1),
            "cpu_ms_per_arrival": round(1000 * arrival_cpu / max(1, args.raters), 2),
            "cpu_ms_per_answer": round(1000 * answer_cpu / max(1, answers), 2),
            "cpu_ms_per_image": round(1000 * image_cpu / max(1, images), 2),
            "cpu_ms_per_cycle": round(1000 * (answer_cpu + image_cpu) / max(1, answers), 2),
        }
    finally:
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--answers", type=int, default=1500, help="stop after this many answers")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--tasks-per-rater", type=int, default=1000)
    parser.add_argument("--no-prerender", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile's top N")
    parser.add_argument(
        "--profile-arrival", action="store_true", help="profile the raters' arrival instead"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="study-cpu-") as tmp:
        print(json.dumps(run(args, Path(tmp))))


if __name__ == "__main__":
    main()
