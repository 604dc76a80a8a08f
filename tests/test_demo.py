"""`hvqeval demo` end to end: report, results, studies, rerun reuse — and a person answers a study.

This runs the real command at its smallest budget (``--minutes 1``: every stage trains a few
steps, so the models learn little, but every artefact is made by the real pipeline), then
serves the demo's study database under gunicorn and answers the rating study in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "hvqeval", "demo", "--out", str(out), "--minutes", "1", "--json"],
                            capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    return out, summary, result.stderr


def test_demo_writes_report_results_and_studies(demo_dir):
    out, summary, _ = demo_dir
    assert summary["report"] == str(out / "report.html")
    report = (out / "report.html").read_text()
    for heading in ("Samples per class", "Sampled reconstructions", "Table 1: IS, FID and joint NLL",
                    "Nearest neighbours in pixel space", "Human studies", "How each number was made"):
        assert heading in report
    # Figures are embedded, so the report is one self-contained file.
    assert report.count("data:image/png;base64,") >= 2 + 2 + 2
    rows = [json.loads(line) for line in (out / "results" / "results.jsonl").read_text().splitlines()]
    metrics = {(r["model"], r["metric"]) for r in rows}
    for model in ("tiny_ff", "tiny_msp"):
        assert {(model, "isc"), (model, "fid"), (model, "nll_bpd")} <= metrics
    assert all(r["feature_extractor"].startswith("domain") for r in rows if r["metric"] in ("isc", "fid"))
    # Every Table 1 value appears in the report.
    for r in rows:
        if r["metric"] == "fid":
            assert f"{r['value']:.2f}" in report
    assert set(summary["studies"]) == {"demo-rating", "demo-ff-vs-msp", "demo-msp-vs-real"}
    assert "hvqeval study serve" in summary["serve_command"]


def test_rerun_reuses_every_finished_step(demo_dir):
    out, _, _ = demo_dir
    steps_before = json.loads((out / "steps.json").read_text())
    result = subprocess.run([sys.executable, "-m", "hvqeval", "demo", "--out", str(out), "--minutes", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reused = re.findall(r"\[demo\] (\S+): done earlier, reused", result.stderr)
    assert set(reused) == set(steps_before) - {"report"} or set(reused) == set(steps_before)
    assert "hvqeval train" not in result.stderr.replace("$ hvqeval train", "")  # nothing retrained
    assert "report:" in result.stdout


@pytest.mark.browser
def test_a_person_can_answer_the_demo_rating_study(demo_dir, browser, artifacts_dir):
    from study_app.db import make_engine, session_scope
    from study_app.schema import Answer, Study
    from study_server import LocalServer

    out, summary, _ = demo_dir
    url = summary["database_url"]
    with LocalServer(url, str(out / "instance"), workers=1, threads=4) as server:
        link = summary["studies"]["demo-rating"].replace("http://127.0.0.1:8000", f"http://127.0.0.1:{server.port}")
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(link)
        page.wait_for_selector("text=please ignore blur and other scaling artifacts", timeout=20000)
        page.check("input[name=agree]")
        page.click("#start")
        answered = 0
        while not page.locator("#done").is_visible():
            page.wait_for_function(
                "() => document.getElementById('done').offsetParent !== null || "
                "(document.querySelector('#task button.answer') && !document.querySelector('#task button.answer').disabled)",
                timeout=20000)
            if page.locator("#done").is_visible():
                break
            assert page.evaluate("document.getElementById('img-0').naturalWidth") == 512
            page.keyboard.press(str(1 + answered % 5))  # the rater's keys 1-5
            answered += 1
            assert answered <= 20, "the study never showed its completion code"
            page.wait_for_function(
                "n => document.getElementById('done').offsetParent !== null || "
                "document.getElementById('progress-text').textContent.startsWith(n + ' /')", arg=answered, timeout=20000)
        assert re.fullmatch(r"[0-9A-F]{12}", page.inner_text("#code"))
        page.screenshot(path=str(artifacts_dir / "demo_rating_done.png"))
    with session_scope(make_engine(url)) as session:
        study_id = session.scalar(select(Study.id).where(Study.name == "demo-rating"))
        ratings = session.scalars(select(Answer.rating).where(Answer.study_id == study_id)).all()
    assert len(ratings) == answered > 0
    assert all(1 <= r <= 5 for r in ratings)
