"""Chromium (Playwright) through a whole rating session and a whole pairwise session against the
production server, with mouse and keyboard, on a desktop and a phone-sized screen. Screenshots
go to the artifacts folder. Each runs on SQLite, and on PostgreSQL when HVQEVAL_TEST_DATABASE_URL
is set (the same SQLAlchemy statements, with PostgreSQL's row locks)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from sqlalchemy import select
from study_schemas import dispose_all, engine_for, isolated_url
from study_server import LocalServer

from hvqeval.commands.study.real_images import (
    create_with_real_images as create_study,  # writes the real images, as the CLI does
)
from hvqeval.sample_set import SampleSetWriter
from study_app.create import SourceSpec, StudySettings
from study_app.db import session_scope
from study_app.schema import Answer, Study

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CLASSES = (0, 3)


def _shapes_set(path, model: str, seed: int):
    """Stand-in 'generated' images: shapes images with a model-specific colour shift."""
    from models.data import class_label, open_dataset

    dataset = open_dataset("shapes", "train", image_size=32, seed=seed, length=400)
    writer = SampleSetWriter(path, model=model, image_size=32, seed=seed)
    counts = dict.fromkeys(CLASSES, 0)
    for i in range(len(dataset)):
        image, class_id = dataset[i]
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


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    cleanup = lambda: None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'study.sqlite3'}"
    elif os.environ.get("HVQEVAL_TEST_DATABASE_URL"):
        url, cleanup = isolated_url(os.environ["HVQEVAL_TEST_DATABASE_URL"])  # a fresh schema
    else:
        pytest.skip(
            "PostgreSQL tests need HVQEVAL_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    ff, msp = _shapes_set(tmp / "ff", "tiny_ff", 1), _shapes_set(tmp / "msp", "tiny_msp", 2)
    rating = create_study(
        url,
        StudySettings(
            name="rate",
            kind="rating",
            sources=(SourceSpec("ff", str(ff.path)), SourceSpec("msp", str(msp.path))),
            classes=CLASSES,
            per_class=3,
            answers_per_item=1,
            tasks_per_rater=5,
            examples_real="shapes",
        ),
        tmp,
    )
    pairwise = create_study(
        url,
        StudySettings(
            name="pair",
            kind="pairwise",
            sources=(SourceSpec("ff", str(ff.path)), SourceSpec("real", "real:shapes")),
            classes=CLASSES,
            per_class=3,
            pairs_per_class=6,
            answers_per_item=2,
            tasks_per_rater=4,
        ),
        tmp,
    )
    dispose_all()
    try:
        with LocalServer(url, str(tmp), workers=1, threads=4) as srv:
            # screenshots of the SQLite run keep their plain names
            suffix = "" if request.param == "sqlite" else f"_{request.param}"
            yield {
                "base": f"http://127.0.0.1:{srv.port}",
                "url": url,
                "rating": rating,
                "pairwise": pairwise,
                "shot": lambda name: artifacts_name(name, suffix),
            }
    finally:
        dispose_all()
        cleanup()


def artifacts_name(name: str, suffix: str) -> str:
    stem, ext = name.rsplit(".", 1)
    return f"{stem}{suffix}.{ext}"


def _answers(url, name):
    with session_scope(engine_for(url)) as s:
        study_id = s.scalar(select(Study.id).where(Study.name == name))
        return s.execute(
            select(Answer.rating, Answer.choice, Answer.unknown_reason).where(
                Answer.study_id == study_id
            )
        ).all()


def _ready(page, done: int, total: int):
    page.wait_for_function(
        # Null-safe: right after the consent form's "start" click this may still run on the
        # consent page (no #progress-text), and a predicate that throws is not retried.
        "([d, t]) => { const text = document.getElementById('progress-text');"
        " const button = document.querySelector('#task button.answer');"
        " return text !== null && button !== null && text.textContent === d + ' / ' + t"
        " && !button.disabled; }",
        arg=[done, total],
        timeout=15000,
    )


def _consent(page, base, public_id, participant):
    page.goto(f"{base}/s/{public_id}/?PROLIFIC_PID={participant}")
    page.wait_for_selector("text=please ignore blur and other scaling artifacts", timeout=15000)
    page.wait_for_function(
        "() => Array.from(document.images).every(i => i.complete && i.naturalWidth === 512)"
    )
    return page


def test_whole_rating_session_with_mouse_and_keys(browser, server, artifacts_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    api_calls, failed = [], []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    public_id = server["rating"].public_id
    _consent(page, server["base"], public_id, "browser-rater")
    captions = page.locator("figcaption").all_inner_texts()
    assert any(c.startswith("Real image (shapes data set)") for c in captions) and any(
        c.startswith("Generated") for c in captions
    )
    page.screenshot(
        path=str(artifacts_dir / server["shot"]("study_rating_consent.png")), full_page=True
    )
    page.check("input[name=agree]")
    with page.expect_response(lambda r: r.url.endswith("/consent")) as agreed:
        page.click("#start")
    _ready(page, 0, 5)
    # agreeing is answered with the task page (no redirect), whose script shows its address:
    # a reload asks for the task page (the same task), not for the form again
    assert agreed.value.status == 200 and page.url.endswith(f"/s/{public_id}/task")
    label = page.inner_text("#label")
    assert re.fullmatch(r"(ring \(0\)|cross \(3\))", label)
    page.reload()
    _ready(page, 0, 5)
    assert page.inner_text("#label") == label
    assert page.evaluate("document.getElementById('img-0').naturalWidth") == 512
    page.screenshot(
        path=str(artifacts_dir / server["shot"]("study_rating_task.png")), full_page=True
    )
    page.click("button.answer[data-answer='4']")  # mouse
    _ready(page, 1, 5)
    page.keyboard.press("2")  # keys 1-5
    _ready(page, 2, 5)
    page.keyboard.press("5")
    _ready(page, 3, 5)
    page.click("#cant summary")  # the "can't answer" escape
    page.click("button.unknown[data-reason='cannot-decide']")
    _ready(page, 4, 5)
    page.keyboard.press("1")
    page.wait_for_selector("#done", state="visible", timeout=15000)
    code = page.inner_text("#code")
    assert re.fullmatch(r"[0-9A-F]{12}", code)
    page.screenshot(
        path=str(artifacts_dir / server["shot"]("study_rating_done.png")), full_page=True
    )
    answers = _answers(server["url"], "rate")
    assert sorted(a.rating for a in answers if a.rating) == [1, 2, 4, 5]
    assert [(a.choice, a.unknown_reason) for a in answers if a.rating is None] == [
        ("unknown", "cannot-decide")
    ]
    # the task page brought the first task; every later one came with an answer's reply
    assert [url.rsplit("/", 1)[1] for url in api_calls] == ["answer"] * 5
    assert failed == []  # nothing the pages ask for is missing (the icon included)
    page.close()


def test_whole_pairwise_session_on_a_phone_with_arrows_and_taps(browser, server, artifacts_dir):
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    _consent(page, server["base"], server["pairwise"].public_id, "phone-rater")
    page.check("input[name=agree]")
    page.click("#start")
    _ready(page, 0, 4)
    assert page.inner_text("#question") == "Which image is real?"
    left, right = page.locator("#img-0").bounding_box(), page.locator("#img-1").bounding_box()
    assert (
        left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 1
    )  # side by side
    assert right["x"] + right["width"] <= 390  # both fit the phone's width
    page.screenshot(
        path=str(artifacts_dir / server["shot"]("study_pairwise_phone.png")), full_page=True
    )
    page.keyboard.press("ArrowLeft")
    _ready(page, 1, 4)
    page.keyboard.press("ArrowRight")
    _ready(page, 2, 4)
    page.tap("button.pick[data-answer='left']")
    _ready(page, 3, 4)
    page.click("button.pick[data-answer='right']")
    page.wait_for_selector("#done", state="visible", timeout=15000)
    assert re.fullmatch(r"[0-9A-F]{12}", page.inner_text("#code"))
    page.screenshot(
        path=str(artifacts_dir / server["shot"]("study_pairwise_phone_done.png")), full_page=True
    )
    answers = _answers(server["url"], "pair")
    assert len(answers) == 4 and {a.choice for a in answers} <= {"a", "b"}
    body = page.content()
    assert "tiny_ff" not in body and "real" not in page.inner_text("#progress-text")
    context.close()


def test_pairwise_task_on_a_desktop(browser, server, artifacts_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _consent(page, server["base"], server["pairwise"].public_id, "desk-rater")
    page.check("input[name=agree]")
    page.click("#start")
    _ready(page, 0, 4)
    page.screenshot(
        path=str(artifacts_dir / server["shot"]("study_pairwise_task.png")), full_page=True
    )
    page.keyboard.press("ArrowRight")
    _ready(page, 1, 4)
    assert len(_answers(server["url"], "pair")) >= 1
    page.close()
