"""Attention checks on SQLite and PostgreSQL: practice items first, catch items unannounced at
reproducible positions, never counted toward the k answers of a counted item, pass rates
stored and exported, the exposure limit recorded with every answer, and one-line errors."""

from __future__ import annotations

import csv
import io
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import func, select
from study_schemas import admin_app, engine_for, logged_in_admin

from hvqeval.cli import cli
from study_app import assign, checks
from study_app.catch_items import CHECK_SOURCE_LABEL, catch_count, corrupt
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import downgrade, session_scope, upgrade
from study_app.errors import StudyError
from study_app.export import export_rows, rows_to_csv
from study_app.sample_sets import sha256_file
from study_app.schema import Answer, Image, Item, Slot, Source, Study

TASKS, K = 6, 2


def make_study(db_url, sets, tmp_path, kind="pairwise", name="checked", **extra):
    sources = (SourceSpec("ff", str(sets["ff"].path)),)
    if kind == "pairwise":
        sources += (SourceSpec("msp", str(sets["msp"].path)),)
    settings = StudySettings(
        name=name,
        kind=kind,
        sources=sources,
        classes=(3, 5),
        answers_per_item=K,
        tasks_per_rater=TASKS,
        uses=2 if kind == "pairwise" else None,
        seed=7,
        **{"per_class": 3, "catch_fraction": 0.25, "practice": 2, "exposure_ms": 800, **extra},
    )
    create_study(db_url, settings, tmp_path / "inst")
    with session_scope(engine_for(db_url)) as s:
        study = s.scalar(select(Study).where(Study.name == name))
        s.expunge(study)
    return engine_for(db_url), study


def corrupted_tokens(engine, study) -> set[str]:
    with session_scope(engine) as s:
        return set(
            s.scalars(
                select(Image.token)
                .join(Source, Source.id == Image.source_id)
                .where(Source.study_id == study.id, Source.label == CHECK_SOURCE_LABEL)
            )
        )


def run_rater(engine, study, participant: str, fail_checks: bool, bad: set[str]):
    """Answer every task of one rater; catch/practice items right (or wrong when ``fail_checks``).
    Returns the roles in the order shown."""
    rater = assign.enter(engine, study, participant).rater_id
    assign.record_consent(engine, rater)
    roles = []
    current = assign.next_task(engine, study.public_id, rater)
    while isinstance(current, assign.Task):
        roles.append(current.role)
        if study.kind == "pairwise":
            corrupted_left = current.image_tokens[0] in bad
            if current.role == "task":
                side = "left"
            else:  # the right answer is the uncorrupted side
                side = "right" if corrupted_left != fail_checks else "left"
            answer = side
        else:
            answer = 5 if fail_checks or current.role == "task" else 1
        _, current = assign.submit(
            engine, study.public_id, rater, current.token, answer, None, 900, with_next=True
        )
    assert isinstance(current, assign.Finished)
    return rater, roles


def test_practice_first_catch_items_unannounced_never_counted(db_url, sets, tmp_path):
    engine, study = make_study(db_url, sets, tmp_path)
    c = catch_count(0.25, TASKS)
    assert (study.catch_items, study.practice_items, c) == (2, 2, 2)  # 2 of 8 = 25%
    bad = corrupted_tokens(engine, study)
    assert len(bad) == c + 2
    with session_scope(engine) as s:
        counted = s.scalar(
            select(func.count()).where(Item.study_id == study.id, Item.role == "task")
        )
    raters = {}
    for n in range(counted * K // TASKS + 2):
        name = f"r{n}"
        raters[name] = run_rater(engine, study, name, fail_checks=(n == 0), bad=bad)
    full = [n for n, (_r, roles) in raters.items() if roles.count("task") == TASKS]
    assert len(full) == counted * K // TASKS  # the others found the counted items all answered
    for name in full:
        roles = raters[name][1]
        assert roles[:2] == ["practice", "practice"] and roles.count("catch") == c
        positions = {i for i, role in enumerate(roles[2:]) if role == "catch"}
        assert positions == checks.catch_positions(study, name)  # seeded per rater
    with session_scope(engine) as s:
        per_item = Counter(
            s.scalars(
                select(Answer.item_id)
                .join(Item, Item.id == Answer.item_id)
                .where(Answer.study_id == study.id, Item.role == "task")
            )
        )
        assert len(per_item) == counted and set(per_item.values()) == {K}  # exactly k each
        slots = s.execute(
            select(Slot.item_id, Slot.filled, Slot.lease_token)
            .join(Item, Item.id == Slot.item_id)
            .where(Item.study_id == study.id, Item.role != "task")
        ).all()
        assert len(slots) == c + 2 and all(f and lease is None for _, f, lease in slots)
        exposures = set(s.scalars(select(Answer.exposure_ms).where(Answer.study_id == study.id)))
        assert exposures == {800}
    rates = checks.participant_pass_rates(engine, "checked")
    assert rates["r0"] == (0, c) and all(rates[n] == (c, c) for n in full if n != "r0")
    assert all(sum(rates.get(n, (0, 0))) <= 2 * c for n in raters)

    rows = export_rows(engine, "checked")
    assert Counter(r["role"] for r in rows)["catch"] == sum(given for _ok, given in rates.values())
    for row in rows:
        failed = row["rater"] == "r0"
        if row["role"] == "catch":
            assert row["check_passed"] == (0 if failed else 1)
            assert row["model_b"] == CHECK_SOURCE_LABEL and row["model_a"] in ("ff", "msp")
        if row["role"] == "task":
            assert row["check_passed"] is None and row["model_b"] != CHECK_SOURCE_LABEL
        if row["rater"] in rates:
            assert row["check_pass_rate"] == (0.0 if failed else 1.0)
        assert row["exposure_ms"] == 800
    header = next(csv.reader(io.StringIO(rows_to_csv(rows))))
    assert header[-4:] == ["role", "exposure_ms", "check_passed", "check_pass_rate"]


def test_a_repeated_catch_answer_stores_nothing(db_url, sets, tmp_path):
    engine, study = make_study(db_url, sets, tmp_path, practice=1)
    rater = assign.enter(engine, study, "p").rater_id
    assign.record_consent(engine, rater)
    first = assign.next_task(engine, study.public_id, rater)
    assert first.role == "practice" and (first.done, first.total) == (0, 1)
    again = assign.next_task(engine, study.public_id, rater)
    assert again.token == first.token  # the open practice item, not a new one
    done, following = assign.submit(
        engine, study.public_id, rater, first.token, "left", None, 5, True
    )
    assert done == 0 and following.role != "practice"
    assert (following.done, following.total) == (0, TASKS + study.catch_items)
    with pytest.raises(assign.AnswerRejected) as err:
        assign.submit(engine, study.public_id, rater, first.token, "right", None, 5)
    assert err.value.status == 409
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).where(Answer.rater_id == rater)) == 1


def test_rating_catch_items_pass_with_a_low_rating(db_url, sets, tmp_path):
    engine, study = make_study(db_url, sets, tmp_path, kind="rating", practice=0)
    bad = corrupted_tokens(engine, study)
    run_rater(engine, study, "good", False, bad)
    run_rater(engine, study, "bad", True, bad)
    rates = checks.participant_pass_rates(engine, "checked")
    assert rates == {"good": (2, 2), "bad": (0, 2)}


def test_a_study_without_checks_hands_out_as_before(db_url, sets, tmp_path):
    engine, study = make_study(
        db_url, sets, tmp_path, catch_fraction=0.0, practice=0, exposure_ms=None
    )
    assert corrupted_tokens(engine, study) == set()
    _rater, roles = run_rater(engine, study, "x", False, set())
    assert roles == ["task"] * TASKS
    assert not (tmp_path / "inst" / "studies" / "checked" / "checks").exists()


def test_corrupted_copies_are_seeded_visibly_different_and_hashed(db_url, sets, tmp_path):
    engine, study = make_study(db_url, sets, tmp_path)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(corrupt(pixels, 3), corrupt(pixels, 3))
    assert np.abs(corrupt(pixels, 3).astype(int) - pixels).mean() > 40
    with session_scope(engine) as s:
        rows = s.execute(
            select(Image.file, Image.sha256, Source.path)
            .join(Source, Source.id == Image.source_id)
            .where(Source.label == CHECK_SOURCE_LABEL)
        ).all()
    for file, digest, path in rows:
        assert sha256_file(f"{path}/{file}") == digest
        assert PILImage.open(f"{path}/{file}").size == (8, 8)


def test_task_page_labels_practice_and_carries_the_exposure(app, db_url, sets, tmp_path, new_rater):
    _engine, study = make_study(db_url, sets, tmp_path)
    rater = new_rater(study.public_id, "web1")
    page = rater.get(f"/s/{study.public_id}/task")
    assert b'data-exposure-ms="800"' in page.data and b'id="practice"' in page.data
    first = rater.next()
    assert first["practice"] is True and (first["done"], first["total"]) == (0, 2)
    for url in first["images"]:  # the corrupted copy is served like any image of the rater's
        assert rater.get(url).status_code == 200


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"catch_fraction": 1.0}, "--catch-fraction 1.0"),
        (
            {"catch_fraction": 0.6},
            "--catch-fraction 0.6: give a fraction from 0 (no catch items) to 0.5",
        ),
        ({"practice": TASKS + 1}, f"--practice {TASKS + 1}: give 0 to {TASKS} (--tasks-per-rater)"),
        ({"catch_fraction": -0.1}, "--catch-fraction -0.1"),
        ({"practice": -1}, "--practice -1"),
        ({"exposure_ms": 0}, "--exposure-ms 0"),
    ],
)
def test_bad_check_settings_are_one_line_and_create_nothing(db_url, sets, tmp_path, extra, message):
    with pytest.raises(StudyError) as err:
        make_study(db_url, sets, tmp_path, **extra)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0


def test_cli_check_options_and_their_errors(db_url, sets, tmp_path):
    base = [
        "study",
        "create",
        "pairwise",
        "--name",
        "cli",
        "--source",
        f"ff={sets['ff'].path}",
        "--source",
        f"msp={sets['msp'].path}",
        "--classes",
        "3,5",
        "--per-class",
        "2",
        "--uses",
        "1",
        "--tasks-per-rater",
        "9",
        "--database-url",
        db_url,
        "--instance-dir",
        str(tmp_path / "inst"),
    ]
    bad = CliRunner().invoke(cli, [*base, "--exposure-ms", "-5"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1, bad.output
    assert "--exposure-ms -5" in bad.output
    ok = CliRunner().invoke(cli, [*base, "--catch-fraction", "0.1", "--practice", "1"])
    assert ok.exit_code == 0, ok.output
    assert "1 catch item(s) per rater, 1 practice item(s)" in ok.output
    assert "made from 2 image(s) no counted task shows" in ok.output
    assert "exposure: no limit" in ok.output
    listed = CliRunner().invoke(cli, ["study", "list", "--database-url", db_url])
    assert "1 catch, 1 practice per rater, no exposure limit" in listed.output, listed.output


def test_no_image_to_corrupt_is_one_line():
    from study_app.catch_items import pick_originals

    with pytest.raises(StudyError, match="no image to corrupt"):
        pick_originals([], 2, 0, ["real"])


def test_migration_0005_keeps_existing_answers(db_url, sets, tmp_path):
    engine, study = make_study(db_url, sets, tmp_path, catch_fraction=0.0, practice=0)
    run_rater(engine, study, "before", False, set())
    engine.dispose()
    downgrade(db_url, "0004")
    upgrade(db_url)
    with session_scope(engine_for(db_url)) as s:
        roles = set(s.scalars(select(Item.role).where(Item.study_id == study.id)))
        answers = s.scalar(select(func.count()).select_from(Answer))
    assert roles == {"task"} and answers == TASKS


def test_admin_study_page_shows_pass_rates_and_counted_progress(db_url, sets, tmp_path):

    engine, study = make_study(db_url, sets, tmp_path)
    bad = corrupted_tokens(engine, study)
    run_rater(engine, study, "careless", True, bad)
    app = admin_app(db_url, tmp_path / "c")
    admin = logged_in_admin(app, "hunter22")
    page = admin.get("/admin/study/checked").data.decode()
    assert "catch items passed" in page and "0 / 2 (0%)" in page
    assert "2 catch, 2 practice per rater, exposure 800 ms" in page
    # progress counts the counted answers only: 6 of 12 items x k=2
    assert "6 / 24" in admin.get("/admin/").data.decode()


STUDY_ROWS = """
import json, sys
from sqlalchemy import create_engine, text
from study_app.create import SourceSpec, StudySettings, create_study

ff, msp, tmp = sys.argv[1:4]
url = f"sqlite:///{tmp}/study.sqlite3"
settings = StudySettings(
    name="same", kind="pairwise", sources=(SourceSpec("ff", ff), SourceSpec("msp", msp)),
    classes=(3, 5), per_class=3, uses=2, seed=7, tasks_per_rater=6, catch_fraction=0.25,
    practice=2,
)
create_study(url, settings, f"{tmp}/inst")
with create_engine(url).connect() as c:
    images = c.execute(text("SELECT s.label, i.file, i.is_example FROM image i "
                            "JOIN source s ON s.id = i.source_id ORDER BY i.id")).all()
    items = c.execute(text("SELECT number, class_id, role, image_a_id, image_b_id, slot_no, "
                           "shuffle FROM item JOIN slot ON slot.item_id = item.id "
                           "ORDER BY item.id, slot_no")).all()
print(json.dumps([[list(r) for r in images], [list(r) for r in items]]))
"""


def test_a_study_is_the_same_whatever_the_interpreters_hash_seed(sets, tmp_path):
    """A study is drawn from its seed alone: two creates with the same settings, in
    interpreters whose string hashing differs (PYTHONHASHSEED), store the same images in the
    same order, the same items and the same slots (the images only a check item shows were
    stored in the order of a set before)."""
    import json
    import os
    import subprocess
    import sys

    made = []
    for hash_seed in ("1", "2", "3"):
        folder = tmp_path / f"h{hash_seed}"
        folder.mkdir()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                STUDY_ROWS,
                str(sets["ff"].path),
                str(sets["msp"].path),
                str(folder),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
        )
        made.append(json.loads(result.stdout))
    images, items = made[0]
    assert any(label == "ff" and not example for label, _f, example in images)
    assert {r[2] for r in items} >= {"task", "catch", "practice"}
    assert made[1] == made[0] and made[2] == made[0]
