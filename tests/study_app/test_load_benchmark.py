"""The load benchmark (benchmarks/study_load.py) as a user runs it, at a tiny size: raters
arrive spread over the arrival window (locust alone would start them in one batch), every
answer is stored once, and the report carries its second-by-second timeline."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

# Only looked up, never imported: importing locust monkey-patches the whole test process with
# gevent (threads become greenlets, and a blocking file lock then stops every test).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None,
    reason="the load benchmark needs locust: pip install -e '.[bench]'",
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_benchmark_spreads_arrivals_and_checks_the_database():
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "study_load.py"),
            "--database",
            "sqlite",
            "--raters",
            "6",
            "--arrival-s",
            "3",
            "--think-min",
            "0",
            "--think-max",
            "0",
            "--classes",
            "2",
            "--per-class",
            "3",
            "-k",
            "2",
            "--tasks-per-rater",
            "40",
            "--time-limit",
            "60",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)["results"][0]
    assert result["answers_stored"] == result["answers_needed"] == 2 * 2 * 3 * 2
    assert (result["errors"], result["lost"], result["duplicates"]) == (0, 0, 0)
    assert result["exactly_k"] and result["host_loop_s"] > 0
    # where the CPU went: the server's processes and locust's, per answer (SQLite has no
    # processes of its own)
    assert set(result["cpu_ms_per_answer"]) == {"server", "load_generator"}
    assert result["cpu_s"]["server"] > 0 and result["cpu_s"]["load_generator"] > 0
    # 6 raters over 3 s: one every 0.5 s, so their arrival requests end in at least 3
    # different seconds (one locust batch would put them all in the first)
    arrival_seconds = {s["second"] for s in result["timeline"] if s["arrival_requests"]}
    assert len(arrival_seconds) >= 3, result["timeline"]
    assert sum(s["requests"] for s in result["timeline"]) >= result["answers_stored"]
    # like a new browser, every rater loads what its pages name: both example images of the
    # instructions (raters who arrive once the study is full see a message page instead); the
    # stylesheet, the script and the icon are inside the pages, so no file is asked for
    examples = result["requests"]["image (example)"]["count"]
    assert examples > 0 and examples % 2 == 0
    assert "static file" not in result["requests"], result["requests"]
