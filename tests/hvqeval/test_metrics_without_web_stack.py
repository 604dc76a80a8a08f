"""`hvqeval metrics` works for a metrics-only install: Flask, SQLAlchemy and the rest of the
study server's stack (the `[study]` extra) cannot be imported in the child process.

A ``sitecustomize`` on the child's path puts ``None`` into ``sys.modules`` for each of those
packages, which makes any ``import`` of them raise ``ModuleNotFoundError`` exactly as if they
were not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from metrics_helpers import write_image_folder, write_sample_set

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_STACK = [
    "flask",
    "flask_wtf",
    "flask_limiter",
    "werkzeug",
    "sqlalchemy",
    "alembic",
    "gunicorn",
    "limits",
    "redis",
    "psycopg",
]


def blocked_env(tmp_path):
    site = tmp_path / "block_web_stack"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in WEB_STACK)
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["HVQEVAL_CACHE"] = str(tmp_path / "cache")
    return env


def run(args, env, cwd):
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_block_really_hides_the_web_stack(tmp_path):
    env = blocked_env(tmp_path)
    for name in ("flask", "sqlalchemy"):
        result = run(["-c", f"import {name}"], env, tmp_path)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_metrics_help_and_a_real_run_without_flask_or_sqlalchemy(tmp_path, domain_weights):
    env = blocked_env(tmp_path)
    result = run(["-m", "hvqeval", "metrics", "--help"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--reference" in result.stdout

    samples = write_sample_set(tmp_path / "samples", 20, size=16)
    reference = write_image_folder(tmp_path / "reference", 20, size=16)
    result = run(
        [
            "-m",
            "hvqeval",
            "metrics",
            "--samples",
            str(samples),
            "--reference",
            str(reference),
            "--metrics",
            "isc,fid,kid",
            "--extractor",
            "domain",
            "--weights",
            str(domain_weights),
            "--splits",
            "2",
            "--kid-subset-size",
            "10",
            "--results",
            str(tmp_path / "results.jsonl"),
            "--json",
        ],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["metric"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"isc", "fid", "kid"}
    assert rows["isc"]["value"] > 1.0 and rows["fid"]["value"] > 0
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3
    assert "sqlalchemy" not in result.stderr.lower() and "flask" not in result.stderr.lower()


def test_results_appends_wait_for_the_portable_file_lock(tmp_path):
    """Another writer holding the lock (portalocker: flock here, LockFileEx on Windows) makes an
    append wait; it lands, whole, once the lock is released."""
    import threading

    import portalocker

    from hvqeval.results import ResultsStore

    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([{"metric": "fid", "value": 1.0}])
    with open(store.path, "ab") as holder:
        portalocker.lock(holder, portalocker.LOCK_EX)
        writer = threading.Thread(target=store.append, args=([{"metric": "fid", "value": 2.0}],))
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive()  # blocked on the lock
        assert [r["value"] for r in store.read()] == [1.0]
        portalocker.unlock(holder)
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert [r["value"] for r in store.read()] == [1.0, 2.0]
