"""Instructions, not seconds, per request of the study server's cycle: counted by valgrind's
callgrind, the same count whatever else the machine is doing, so two versions of the code
compare exactly on a shared machine whose pace varies (CPU seconds per request varied by
1.5x between runs of unchanged code here; see docs/BENCHMARKS.md).

Runs ``benchmarks/study_cpu.py`` (the app in process, Flask's test client, SQLite) under
``valgrind --tool=callgrind`` three times, in parallel:

    A: R0 raters arrive, no answers      B: R raters arrive, no answers
    C: R raters arrive, N answers (each with its task's image)

of a rating study of one class (2 models x ``--per-class`` images, 3 answers each).

Start-up (imports, building the study, rendering its images) is the same in all three and
cancels out: (B - A) / (R - R0) instructions per arriving rater (entry link, consent, task
page with the first task), (C - B) / N per answer cycle (the task's image, the answer with the
next task). The count covers the server's work, the test client's and SQLite's (all in the one
process), not a socket server's (gunicorn) nor PostgreSQL's.

    python benchmarks/study_instructions.py                      # this checkout
    python benchmarks/study_instructions.py --repo /tmp/old      # another checkout of the code
    git worktree add /tmp/old HEAD~1                             #   (e.g. the commit before)

valgrind (Debian's package) runs Python about 45 times slower than usual: about 10 minutes at
the defaults on 2 cores. Counts of unchanged code differ by a few per cent between runs (threads, such
as the rate-limit storage's timer, run when the clock says), so smaller differences say nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTED_RE = re.compile(r"Collected\s*:\s*(\d+)")


def count(repo: Path, raters: int, answers: int, per_class: int, tmp: Path) -> int:
    """Instructions of one run of study_cpu.py from checkout ``repo``."""
    out = tmp / f"callgrind-{raters}-{answers}.out"
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            # the interpreter itself: a launcher script (pyenv's shims) would be what is counted
            os.path.realpath(sys.executable),
            str(repo / "benchmarks" / "study_cpu.py"),
            "--raters",
            str(raters),
            "--answers",
            str(answers),
            "--classes",
            "1",
            "--per-class",
            str(per_class),
        ],
        env={**os.environ, "PYTHONPATH": str(repo), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    found = COLLECTED_RE.search(run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"study_cpu.py under valgrind failed: {run.stderr.strip()[-1500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout of the code to count")
    parser.add_argument("--raters", type=int, default=40, help="R")
    parser.add_argument("--fewer-raters", type=int, default=5, help="R0")
    parser.add_argument("--answers", type=int, default=120, help="N")
    parser.add_argument(
        "--per-class",
        type=int,
        default=25,
        help="images per model: the study holds 6 x this answers",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    if not (args.repo / "benchmarks" / "study_cpu.py").is_file():
        raise SystemExit(f"--repo {args.repo}: no benchmarks/study_cpu.py there")
    if not 0 <= args.fewer_raters < args.raters or not 0 < args.answers <= 6 * args.per_class:
        raise SystemExit("need 0 <= --fewer-raters < --raters and 0 < --answers <= 6 x --per-class")
    sizes = [(args.fewer_raters, 0), (args.raters, 0), (args.raters, args.answers)]
    with tempfile.TemporaryDirectory(prefix="study-instructions-") as tmp:
        with ThreadPoolExecutor(len(sizes)) as pool:
            a, b, c = pool.map(
                lambda size: count(args.repo, *size, args.per_class, Path(tmp)), sizes
            )
    result = {
        "repo": str(args.repo),
        "instructions_per_arrival": round((b - a) / (args.raters - args.fewer_raters)),
        "instructions_per_answer_cycle": round((c - b) / args.answers),
        "totals": {"A": a, "B": b, "C": c},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.repo}: {result['instructions_per_arrival'] / 1e6:.2f} M instructions per arriving "
        f"rater, {result['instructions_per_answer_cycle'] / 1e6:.2f} M per answer cycle "
        "(image + answer with the next task)"
    )


if __name__ == "__main__":
    main()
