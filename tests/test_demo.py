"""`hvqeval demo` end to end: report, results, studies, rerun reuse, Ctrl-C in every step —
and the printed serve command starts the server a person answers a study on.

This runs the real command at its smallest budget (``--minutes 1``: every stage trains a few
steps, so the models learn little, but every artefact is made by the real pipeline), then
serves the demo's study database under gunicorn and answers the rating study in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from sqlalchemy import select

from hvqeval.demo import Demo
from hvqeval.demo.plan import MIN_STAGE_STEPS

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # --all-steps: a 1-minute budget cannot pay for the baseline and the sweep, which the tests check.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hvqeval",
            "demo",
            "--out",
            str(out),
            "--minutes",
            "1",
            "--all-steps",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    return out, summary, result.stderr


def test_demo_writes_report_results_and_studies(demo_dir):
    out, summary, _ = demo_dir
    assert summary["report"] == str(out / "report.html")
    report = (out / "report.html").read_text()
    for heading in (
        "Samples per class",
        "Sampled reconstructions",
        "Table 1: IS, FID and joint NLL",
        "Temperature and training curves",
        "Nearest neighbours in pixel space",
        "Human studies",
        "How each number was made",
    ):
        assert heading in report
    # Figures are embedded, so the report is one self-contained file: 3 sample grids, 2
    # reconstructions, the temperature and training curves, neighbours.
    assert report.count("data:image/png;base64,") >= 3 + 2 + 2 + 2
    rows = [
        json.loads(line) for line in (out / "results" / "results.jsonl").read_text().splitlines()
    ]
    metrics = {(r["model"], r["metric"]) for r in rows}
    for model in ("tiny_ff", "tiny_msp", "tiny_pixelcnn"):  # the hierarchies and the baseline
        assert {(model, "isc"), (model, "fid"), (model, "nll_bpd")} <= metrics
    assert all(
        r["feature_extractor"].startswith("domain") for r in rows if r["metric"] in ("isc", "fid")
    )
    # Every Table 1 value appears in the report.
    for r in rows:
        if r["metric"] == "fid":
            assert f"{r['value']:.2f}" in report
    assert set(summary["studies"]) == {"demo-rating", "demo-ff-vs-msp", "demo-msp-vs-real"}
    assert "hvqeval study serve" in summary["serve_command"]


def test_report_has_the_baseline_row_a_temperature_curve_and_training_curves(demo_dir):
    out, summary, stderr = demo_dir
    report = (out / "report.html").read_text()
    # Table 1 holds the single-level baseline beside the hierarchies, its NLL marked exact.
    table = report.split("<h2>Table 1: IS, FID and joint NLL</h2>")[1].split("<h2>")[0]
    assert "tiny_pixelcnn" in table and "tiny_ff" in table and "(exact)" in table
    assert "PixelCNN (tiny_pixelcnn)" in report  # and in the quality table
    # The sweep ran through its command, two temperatures of one model, rows in their own store.
    assert "$ hvqeval sweep temperature --run " in stderr
    sweep = [
        json.loads(line)
        for line in (out / "results" / "temperature.jsonl").read_text().splitlines()
    ]
    assert {r["extra"]["sweep"]["value"] for r in sweep} == {0.9, 1.1}
    assert {r["extra"]["sweep"]["model"] for r in sweep} == {"MSP"} and {
        r["metric"] for r in sweep
    } == {"isc", "fid"}
    rows = [
        json.loads(line) for line in (out / "results" / "results.jsonl").read_text().splitlines()
    ]
    assert not any(
        "sweep" in (r.get("extra") or {}) for r in rows
    )  # Table 1 reads temperature 1.0 only
    # The figures are the plot commands' PNGs, embedded in the report.
    for name in ("temperature", "training"):
        figure = out / "figures" / f"{name}.png"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"$ hvqeval plot {name} " in stderr
    assert (
        "--run " + str(out / "runs" / "tiny_pixelcnn") in stderr.split("$ hvqeval plot training")[1]
    )
    section = report.split("<h2>Temperature and training curves</h2>")[1].split("<h2>")[0]
    assert section.count("data:image/png;base64,") == 2


def test_what_the_budget_cut_is_recorded_and_reported(demo_dir):
    out, summary, _ = demo_dir
    import torch

    steps = json.loads((out / "steps.json").read_text())
    planned = summary["plan"]["classifier_steps"]
    trained = steps["classifier"]["classifier_steps"]
    meta = torch.load(
        out / "weights" / "shapes_classifier.pt", map_location="cpu", weights_only=True
    )
    assert 1 <= trained <= planned and meta["meta"]["steps"] == trained
    report = (out / "report.html").read_text()
    if trained < planned:
        assert f"the domain classifier trained {trained} of its {planned} steps" in report
    # Every sized step records the sizes it ran at; the samples hold that many per class.
    per_class = steps["sample_ff"]["per_class"]
    assert 2 <= per_class <= summary["plan"]["per_class"]
    assert len(list((out / "samples" / "tiny_ff").rglob("*.png"))) == 10 * per_class
    if steps["sample_ff"]["scale"] < 1:
        assert "evaluation sizes were cut to" in report and summary["cuts"]


def _checkpoint_step(path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def test_report_shows_the_steps_each_model_got_and_reference_values(demo_dir):
    out, summary, _ = demo_dir
    report = (out / "report.html").read_text()
    assert "How good are these models?" in report
    assert "Reference: Real images (shapes data set)" in report and "uniform model" in report
    # The steps recorded are the steps the checkpoints hold (training is by time, not a fixed count).
    for key, card in (("ff", "tiny_ff"), ("msp", "tiny_msp")):
        level = _checkpoint_step(out / "runs" / card / "level1.pt")
        prior = _checkpoint_step(out / "runs" / card / "prior.pt")
        assert summary["training_steps"][f"train_{key}_level1"] == level >= MIN_STAGE_STEPS
        assert summary["training_steps"][f"train_{key}_prior"] == prior >= MIN_STAGE_STEPS
        assert f"{level} level1, {prior} prior" in report
    rows = [
        json.loads(line) for line in (out / "results" / "results.jsonl").read_text().splitlines()
    ]
    real = {r["metric"]: r["value"] for r in rows if r["model"] == "Real images (shapes data set)"}
    assert set(real) == {"isc", "fid"}
    assert f"{real['isc']:.2f}" in report
    # A --minutes 1 run learns little: the report and the console say so, next to the steps.
    quality = {q["label"]: q for q in summary["quality"]}
    assert quality["FF"]["warnings"] and quality["FF"]["real_isc"] == real["isc"]
    assert "is far from good" in report


def test_rerun_reuses_every_finished_step(demo_dir):
    out, _, _ = demo_dir
    steps_before = json.loads((out / "steps.json").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "hvqeval", "demo", "--out", str(out), "--minutes", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reused = re.findall(r"\[demo\] (\S+): done earlier, reused", result.stderr)
    assert set(reused) == set(steps_before) - {"report"} or set(reused) == set(steps_before)
    assert "hvqeval train" not in result.stderr.replace("$ hvqeval train", "")  # nothing retrained
    assert "report:" in result.stdout
    # The console says what the report says about quality, with the steps each model got.
    assert re.search(r"FF: FAR FROM GOOD after \d+ level1 steps, \d+ prior steps", result.stdout)
    assert 'HVQEVAL_SECRET_KEY="$(cat ' in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.browser
def test_the_printed_serve_command_starts_the_server_as_printed(demo_dir, browser, artifacts_dir):
    out, summary, _ = demo_dir
    assert (out / "secret_key").stat().st_mode & 0o077 == 0  # readable by this user only
    port = _free_port()
    line = summary["serve_command"].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    # Nothing from the test's environment: the line itself must bring the secret key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVQEVAL_")}
    server = subprocess.Popen(
        ["bash", "-c", line],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        link = summary["studies"]["demo-rating"].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        entry_page = link.split("?")[0]  # the study's entry page: no rater is made by asking for it
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(entry_page, timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, (
                    "the printed serve command did not start serving"
                )
                time.sleep(0.5)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(link)
        page.wait_for_selector("text=please ignore blur and other scaling artifacts", timeout=20000)
        page.screenshot(path=str(artifacts_dir / "demo_served_as_printed.png"))
        # The admin password file the line reads opens the admin pages.
        page.goto(f"http://127.0.0.1:{port}/admin/")
        page.fill("input[name=password]", (out / "admin_password").read_text().strip())
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_selector("text=demo-rating", timeout=20000)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.browser
def test_a_person_can_answer_the_demo_rating_study(demo_dir, browser, artifacts_dir):
    from study_server import LocalServer

    from study_app.db import make_engine, session_scope
    from study_app.schema import Answer, Study

    out, summary, _ = demo_dir
    url = summary["database_url"]
    with LocalServer(url, str(out / "instance"), workers=1, threads=4) as server:
        link = summary["studies"]["demo-rating"].replace(
            "http://127.0.0.1:8000", f"http://127.0.0.1:{server.port}"
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(link)
        page.wait_for_selector("text=please ignore blur and other scaling artifacts", timeout=20000)
        page.check("input[name=agree]")
        page.click("#start")
        answered = 0
        while not page.locator("#done").is_visible():
            # Null-safe: right after the "start" click this may still run on the consent page,
            # and a predicate that throws is not retried.
            page.wait_for_function(
                "() => { const done = document.getElementById('done');"
                " const button = document.querySelector('#task button.answer');"
                " return (done !== null && done.offsetParent !== null)"
                " || (button !== null && !button.disabled); }",
                timeout=20000,
            )
            if page.locator("#done").is_visible():
                break
            assert page.evaluate("document.getElementById('img-0').naturalWidth") == 512
            page.keyboard.press(str(1 + answered % 5))  # the rater's keys 1-5
            answered += 1
            assert answered <= 20, "the study never showed its completion code"
            page.wait_for_function(
                "n => document.getElementById('done').offsetParent !== null || "
                "document.getElementById('progress-text').textContent.startsWith(n + ' /')",
                arg=answered,
                timeout=20000,
            )
        assert re.fullmatch(r"[0-9A-F]{12}", page.inner_text("#code"))
        page.screenshot(path=str(artifacts_dir / "demo_rating_done.png"))
    with session_scope(make_engine(url)) as session:
        study_id = session.scalar(select(Study.id).where(Study.name == "demo-rating"))
        ratings = session.scalars(select(Answer.rating).where(Answer.study_id == study_id)).all()
    assert len(ratings) == answered > 0
    assert all(1 <= r <= 5 for r in ratings)


def _wait_for_line(process, pattern: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        seen.append(line)
        if re.search(pattern, line):
            return seen
        assert time.monotonic() < deadline, "".join(seen[-30:])
    raise AssertionError("the demo ended before " + pattern + "\n" + "".join(seen[-30:]))


def test_all_steps_runs_the_extras_an_earlier_run_left_out(tmp_path):
    """A run whose budget left an extra out records it as skipped; a rerun with --all-steps
    runs it (a rerun without keeps it left out), and keeps every finished step."""
    from hvqeval.demo.plan import OPTIONAL

    out = tmp_path / "demo"
    out.mkdir()
    group, members = next(iter(OPTIONAL.items()))
    left_out = {
        m: {"seconds": 0.0, "skipped": f"no time left for {group}" if i == 0 else f"as {group} is"}
        for i, m in enumerate(members)
    }
    finished = {"classifier": {"seconds": 3.0, "classifier_steps": 5}}
    (out / "steps.json").write_text(json.dumps({**finished, **left_out}))
    quiet = {"echo": lambda line: None}
    assert Demo(out, 1, "shapes", None, all_steps=True, **quiet).steps == finished
    assert Demo(out, 1, "shapes", None, **quiet).steps == {**finished, **left_out}


def test_ctrl_c_in_every_step_stops_at_once_and_a_rerun_finishes_the_same_steps(demo_dir, tmp_path):
    out = tmp_path / "demo"
    # 1) A real Ctrl-C (SIGINT) while the first training command runs.
    process = subprocess.Popen(
        [sys.executable, "-m", "hvqeval", "demo", "--out", str(out), "--minutes", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_for_line(process, r"^\$ hvqeval train .*--level 1", timeout=900)
        # At once: the line is printed just before the command starts, which takes far longer
        # than this to build its model, so the signal lands inside the command.
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=120)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, rest[-2000:]
    assert (
        rest.count("Interrupted; finished work is kept") == 1
    )  # the command's, not the demo's too
    assert "[demo] train_ff_prior" not in rest and "$ hvqeval" not in rest  # nothing ran after it
    steps = json.loads((out / "steps.json").read_text())
    assert "classifier" in steps and "train_ff_level1" not in steps

    # 2) An interrupt at the first command of every later step, one rerun each.
    names = [
        name
        for name, _ in Demo(out, 1, "shapes", None, echo=lambda line: None, all_steps=True).order()
    ]
    for target in names[1:]:
        armed = []

        def echo(line, target=target, armed=armed):
            if line == f"[demo] {target} ...":
                if target == "report":  # written by the demo itself, no command
                    raise KeyboardInterrupt
                armed.append(True)
            elif armed and line.startswith("$ hvqeval "):
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            Demo(out, 1, "shapes", None, echo=echo, all_steps=True).run()
        steps = json.loads((out / "steps.json").read_text())
        assert target not in steps, f"interrupted step {target} was recorded as done"
        assert set(names[: names.index(target)]) <= set(steps)

    # 3) The last rerun finishes; the steps and the report match an uninterrupted run's.
    summary = Demo(out, 1, "shapes", None, echo=lambda line: None, all_steps=True).run()
    steps = json.loads((out / "steps.json").read_text())
    uninterrupted = json.loads((demo_dir[0] / "steps.json").read_text())
    assert list(steps) == names and set(steps) == set(uninterrupted)
    report = (out / "report.html").read_text()
    for key, card in (("ff", "tiny_ff"), ("msp", "tiny_msp")):
        level = _checkpoint_step(out / "runs" / card / "level1.pt")
        prior = _checkpoint_step(out / "runs" / card / "prior.pt")
        assert summary["training_steps"] == {
            **summary["training_steps"],
            f"train_{key}_level1": level,
            f"train_{key}_prior": prior,
        }
        assert f"{level} level1, {prior} prior" in report
    assert report.count("data:image/png;base64,") >= 6
