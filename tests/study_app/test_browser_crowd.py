"""Chromium through a 3-source pairwise study (a model's sample set, an imported plain folder,
real images) with a practice item, catch items and an exposure limit on the production server:
a Prolific link to the completion redirect (the finished screen counting every answer, catch
items too: N / N), an MTurk preview that claims nothing, an MTurk
assignment (a rater who fails the catch items on purpose) to its externalSubmit form; then the
export (every answer once, its sides, catch results, platform ids and codes) and Table 3 with
the Bradley-Terry ranking, listing and then excluding the rater who failed the checks. The
platforms' own sites are answered by Playwright routes (no network)."""

from __future__ import annotations

import csv
import json
from urllib.parse import parse_qs

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select
from study_schemas import dispose_all, engine_for
from study_server import LocalServer

from hvqeval.cli import cli
from hvqeval.commands.study.real_images import (
    create_with_real_images as create_study,  # writes the real images, as the CLI does
)
from hvqeval.image_import import import_images
from hvqeval.sample_set import SampleSetWriter
from study_app.catch_items import CHECK_SOURCE_LABEL
from study_app.create import SourceSpec, StudySettings
from study_app.db import session_scope
from study_app.schema import Image as ImageRow
from study_app.schema import Rater, Source

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PROLIFIC = "https://app.prolific.com/submissions/complete?cc=C0DE42"
SANDBOX = "https://workersandbox.mturk.com"


def shapes_set(path, model: str, seed: int, classes=(0, 3)):
    """Stand-in 'generated' images: 5 shapes images per class with a model-specific colour shift."""
    from models import class_label, open_dataset

    dataset = open_dataset("shapes", "train", image_size=32, seed=seed, length=400)
    writer = SampleSetWriter(path, model=model, image_size=32, seed=seed)
    counts = dict.fromkeys(classes, 0)
    for i in range(len(dataset)):
        image, class_id = dataset[i]  # (3, 32, 32) uint8
        if counts.get(class_id, 99) < 5:
            hwc = image.permute(1, 2, 0).numpy().astype(np.int16)
            hwc[..., seed % 3] += 40
            writer.add(
                np.clip(hwc, 0, 255).astype(np.uint8),
                class_id,
                class_label(dataset.class_names[class_id], class_id),
            )
            counts[class_id] += 1
    return writer.close()


def ready(page, progress: str):
    page.wait_for_function(
        # Null-safe: right after the consent form's "start" click this may still run on the
        # consent page (no #progress-text), and a predicate that throws is not retried.
        "(p) => { const text = document.getElementById('progress-text');"
        " const button = document.querySelector('#task button.answer');"
        " return text !== null && button !== null && text.textContent === p"
        " && !button.disabled; }",
        arg=progress,
        timeout=15000,
    )


FINISHED_SCREEN_JS = """
document.addEventListener("DOMContentLoaded", () => {
  const done = document.getElementById("done");
  if (!done) return;
  new MutationObserver(() => {
    if (!done.hidden) window.finishedScreen(document.getElementById("progress-text").textContent);
  }).observe(done, { attributes: true });
});
"""
# 1 practice item (which one it is, of the practice items), then 4 tasks + 1 catch item (done
# of all; the catch item is not announced)
PROGRESS = ["practice 1 / 1"] + [f"{n} / 5" for n in range(5)]


def _token(page, i: int) -> str:
    return (
        page.get_attribute(f"#img-{i}", "src").rsplit("/", 1)[1].split(".")[0]
    )  # token.signature.png


def _answer_all(page, corrupted: set[str], fail_checks: bool = False):
    """Answer every task; a check item (one image corrupted) right, or wrong with ``fail_checks``.
    Returns [(left token, right token, key pressed)] in order."""
    shown = []
    for n, progress in enumerate(PROGRESS):
        ready(page, progress)
        assert page.locator("#practice").is_visible() == (n == 0)  # practice is labelled
        left, right = _token(page, 0), _token(page, 1)
        if n == 1:  # the exposure limit hides the images; the rater can still answer
            page.wait_for_selector("#app.exposure-over", timeout=5000)
            assert page.eval_on_selector("#img-0", "e => getComputedStyle(e).visibility") == (
                "hidden"
            )
        if left in corrupted or right in corrupted:
            key = "ArrowLeft" if (right in corrupted) != fail_checks else "ArrowRight"
        else:
            key = "ArrowLeft" if n % 2 else "ArrowRight"
        page.keyboard.press(key)
        shown.append((left, right, key))
    return shown


def _samples(url: str) -> tuple[dict[str, str], set[str]]:
    """{image token: export sample id} of every image, and the tokens of the corrupted copies."""
    with session_scope(engine_for(url)) as s:
        rows = s.execute(
            select(ImageRow.token, Source.sample_set_id, ImageRow.file, Source.label).join(
                Source, Source.id == ImageRow.source_id
            )
        ).all()
    return (
        {t: f"{set_id}/{file}" for t, set_id, file, _ in rows},
        {t for t, _, _, label in rows if label == CHECK_SOURCE_LABEL},
    )


def test_three_sources_prolific_and_mturk_end_to_end(browser, tmp_path, artifacts_dir):
    url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    ff = shapes_set(tmp_path / "ff", "tiny_ff", 1)
    flat = tmp_path / "biggan_pngs"
    for c in (0, 3):
        for i, f in enumerate(shapes_set(tmp_path / f"src{c}", "other", 2).files):
            if f.class_id == c:
                (flat / str(c)).mkdir(parents=True, exist_ok=True)
                Image.open(tmp_path / f"src{c}" / f.file).save(flat / str(c) / f"img{i}.png")
    imported = import_images(flat, tmp_path / "imported", model="BigGAN", classes_of="shapes")
    settings = StudySettings(
        name="crowd",
        kind="pairwise",
        sources=(
            SourceSpec("ff", str(ff.path)),
            SourceSpec("biggan", str(imported.path)),
            SourceSpec("real", "real:shapes"),
        ),
        classes=(0, 3),
        per_class=2,
        uses=1,
        answers_per_item=2,
        tasks_per_rater=4,
        completion_code="C0DE42",
        completion_url=PROLIFIC,
        catch_fraction=0.2,  # 1 catch item among each rater's 5 answers
        practice=1,
        exposure_ms=400,
    )
    summary = create_study(url, settings, tmp_path)
    assert summary.items == 2 * 3 * 2  # 2 classes x 3 source pairs x 2 pairs
    assert (summary.catch_items, summary.practice_items) == (1, 1)
    samples, corrupted = _samples(url)
    assert len(corrupted) == 2
    dispose_all()
    shown = {}
    with LocalServer(url, str(tmp_path), workers=1, threads=4) as srv:
        base = f"http://127.0.0.1:{srv.port}/s/{summary.public_id}/"
        # Prolific: link -> consent -> 4 answers -> redirected to the completion URL
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # the finished screen as it appears, reported before the browser leaves for Prolific
        finished_screen = []
        page.expose_function("finishedScreen", lambda text: finished_screen.append(text))
        page.add_init_script(FINISHED_SCREEN_JS)
        page.goto(base + "?PROLIFIC_PID=pp1&STUDY_ID=st9&SESSION_ID=se7")
        page.check("input[name=agree]")
        page.click("#start")
        # (the browser then leaves for Prolific's site, which this machine cannot reach)
        with page.expect_response(
            lambda r: r.url.endswith("/complete"), timeout=15000
        ) as completion:
            shown["pp1"] = _answer_all(page, corrupted)
        assert completion.value.status == 302 and completion.value.headers["location"] == PROLIFIC
        # every answer counted on the finished screen, the catch item too: 4 tasks + 1 catch
        assert finished_screen == ["5 / 5"]

        # MTurk preview: instructions and examples, nothing stored
        preview = browser.new_page()
        preview.goto(base + "?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1")
        assert (
            preview.locator("#preview").is_visible()
            and preview.locator("input[name=agree]").count() == 0
        )
        assert preview.locator("figcaption").count() >= 2
        with session_scope(engine_for(url)) as s:
            assert s.scalar(select(func.count()).select_from(Rater)) == 1

        # MTurk assignment: the completion page posts the assignment to turkSubmitTo
        worker = browser.new_page()
        posted = []

        def mturk(route):
            posted.append(parse_qs(route.request.post_data))
            route.fulfill(body="<p>submitted</p>", content_type="text/html")

        worker.route(f"{SANDBOX}/**", mturk)
        worker.goto(base + f"?workerId=W1&assignmentId=A77&hitId=H1&turkSubmitTo={SANDBOX}")
        worker.check("input[name=agree]")
        worker.click("#start")
        shown["W1"] = _answer_all(worker, corrupted, fail_checks=True)
        worker.wait_for_selector("#submit-hit", timeout=15000)
        worker.screenshot(path=str(artifacts_dir / "study_mturk_submit.png"), full_page=True)
        worker.click("#submit-hit")
        worker.wait_for_url(f"{SANDBOX}/mturk/externalSubmit", timeout=15000)
        assert posted == [{"assignmentId": ["A77"], "completion_code": ["C0DE42"]}]

    out = tmp_path / "responses.csv"
    runner = CliRunner()
    assert (
        runner.invoke(
            cli, ["study", "export", "--study", "crowd", "--out", str(out), "--database-url", url]
        ).exit_code
        == 0
    )
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    # every answer once: per rater 4 counted, 1 catch, 1 practice
    assert len(rows) == 12 and len({(r["rater"], r["item"]) for r in rows}) == 12
    for rater, answers in shown.items():
        mine = [r for r in rows if r["rater"] == rater]  # in the order answered
        assert [r["role"] for r in mine].count("task") == 4 and mine[0]["role"] == "practice"
        for row, (left, right, key) in zip(mine, answers):
            chosen = left if key == "ArrowLeft" else right
            assert row[f"sample_{row['choice']}"] == samples[chosen]  # the side shown was stored
            shown_left = samples[left]
            assert row[f"sample_{row['left']}"] == shown_left
            if row["role"] != "task":
                assert row["model_b"] == CHECK_SOURCE_LABEL
                assert row["check_passed"] == ("0" if rater == "W1" else "1")
            else:
                assert row["check_passed"] == "" and row["model_b"] != CHECK_SOURCE_LABEL
            assert row["check_pass_rate"] == ("0.0" if rater == "W1" else "1.0")
            assert row["exposure_ms"] == "400"
    assert {
        r["rater"]: (
            r["platform"],
            r["platform_study"],
            r["platform_session"],
            r["completion_code"],
        )
        for r in rows
    } == {"pp1": ("prolific", "st9", "se7", "C0DE42"), "W1": ("mturk", "H1", "A77", "C0DE42")}
    assert {r["left"] for r in rows} <= {"a", "b"} and all(r["choice"] in ("a", "b") for r in rows)
    report = runner.invoke(cli, ["report", "table3", "--responses", str(out), "--json"])
    assert report.exit_code == 0, report.output
    sections = json.loads(report.output)["sections"]
    assert "Bradley" in sections[1]["title"]
    assert {r["model"] for r in sections[1]["rows"]} <= {"ff", "biggan", "real"}
    assert len(sections[0]["rows"]) == 3  # every source pair; catch items are none of them
    listed = runner.invoke(cli, ["report", "table3", "--responses", str(out)])
    assert (
        "1 of 2 raters passed fewer than 75% of their catch items: study crowd: W1 (0/1); kept"
        in (listed.output)
    )
    excluded = runner.invoke(
        cli, ["report", "table3", "--responses", str(out), "--exclude-failed-checks"]
    )
    assert excluded.exit_code == 0, excluded.output
    assert "1 of 2 raters removed (failed-checks: 1) with their 4 answers" in excluded.output
    assert "W1 (0/1); removed with their answers" in excluded.output
