"""Pairwise studies among M >= 2 sources with unequal counts: the pairs, the uses of every
sample, listed pairs, one-line refusals, and Table 3 / Bradley-Terry from the export."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import aliased
from study_schemas import engine_for

from hvqeval.cli import cli
from study_app import assign
from study_app.db import session_scope
from study_app.schema import Image, Item, Source, Study


def _create(db_url, tmp_path, *extra):
    return CliRunner().invoke(
        cli,
        [
            "study",
            "create",
            "pairwise",
            "--name",
            "three",
            "--classes",
            "3,5",
            "--per-class",
            "4",
            "--database-url",
            db_url,
            "--instance-dir",
            str(tmp_path / "inst"),
            *map(str, extra),
        ],
    )


def _items(db_url):
    img_a, img_b, src_a, src_b = aliased(Image), aliased(Image), aliased(Source), aliased(Source)
    with session_scope(engine_for(db_url)) as s:
        return s.execute(
            select(Item.class_id, src_a.label, img_a.file, src_b.label, img_b.file)
            .join(img_a, img_a.id == Item.image_a_id)
            .join(src_a, src_a.id == img_a.source_id)
            .join(img_b, img_b.id == Item.image_b_id)
            .join(src_b, src_b.id == img_b.source_id)
        ).all()


def test_three_sources_unequal_counts_every_pair_and_sample_uses(db_url, sets, tmp_path):
    result = _create(
        db_url,
        tmp_path,
        "--source",
        f"ff={sets['ff'].path}",
        "--source",
        f"msp={sets['msp'].path}",
        "--source",
        "real=real:shapes",
        "--count",
        "msp=3",
        "--count",
        "real=5",
        "--uses",
        2,
        "--raters-per-pair",
        1,
        "--tasks-per-rater",
        100,
        "--json",
    )
    assert result.exit_code == 0, result.output
    # per class: ff(4)-msp(3): 2*4 = 8 pairs; ff(4)-real(5): 2*5 = 10; msp(3)-real(5): 10
    assert json.loads(result.output)["items"] == 2 * (8 + 10 + 10)
    items = _items(db_url)
    per_pair = Counter((c, a, b) for c, a, _fa, b, _fb in items)
    assert per_pair == {
        (c, a, b): n
        for c in (3, 5)
        for (a, b), n in {("ff", "msp"): 8, ("ff", "real"): 10, ("msp", "real"): 10}.items()
    }
    assert len({(c, a, fa, b, fb) for c, a, fa, b, fb in items}) == len(items)  # no repeated pair
    for c, a, b in per_pair:
        uses_a = Counter(fa for cc, aa, fa, bb, _ in items if (cc, aa, bb) == (c, a, b))
        uses_b = Counter(fb for cc, aa, _, bb, fb in items if (cc, aa, bb) == (c, a, b))
        for uses, larger in (
            (uses_a, len(uses_a) >= len(uses_b)),
            (uses_b, len(uses_b) >= len(uses_a)),
        ):
            assert min(uses.values()) >= 2 and max(uses.values()) - min(uses.values()) <= 1
            if larger:
                assert set(uses.values()) == {2}
    with session_scope(engine_for(db_url)) as s:
        study = s.scalar(select(Study))
        s.expunge(study)
    assert (
        study.question == "Which image looks the most realistic?"
    )  # not every pair holds a real image

    # one rater answers everything: the export names the pair of every answer, Table 3 has 3 rows
    engine = engine_for(db_url)
    rater = assign.enter(engine, study, "P1").rater_id
    assign.record_consent(engine, rater)
    for n in range(len(items)):
        task = assign.next_task(engine, study.public_id, rater)
        assign.submit(
            engine, study.public_id, rater, task.token, "left" if n % 3 else "right", None, 900
        )
    out = tmp_path / "responses.csv"
    assert (
        CliRunner()
        .invoke(
            cli,
            ["study", "export", "--study", "three", "--out", str(out), "--database-url", db_url],
        )
        .exit_code
        == 0
    )
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert Counter((r["model_a"], r["model_b"]) for r in rows) == {
        ("ff", "msp"): 16,
        ("ff", "real"): 20,
        ("msp", "real"): 20,
    }
    assert {r["left"] for r in rows} == {"a", "b"}
    report = CliRunner().invoke(cli, ["report", "table3", "--responses", str(out), "--json"])
    assert report.exit_code == 0, report.output
    sections = json.loads(report.output)["sections"]
    table3 = sections[0]["rows"]
    assert {(r["model_a"], r["model_b"]) for r in table3} == {
        ("ff", "msp"),
        ("ff", "real"),
        ("msp", "real"),
    }
    strengths = sections[1]
    assert "Bradley" in strengths["title"] and {r["model"] for r in strengths["rows"]} == {
        "ff",
        "msp",
        "real",
    }


def test_listed_pairs_only(db_url, sets, tmp_path):
    result = _create(
        db_url,
        tmp_path,
        "--source",
        f"ff={sets['ff'].path}",
        "--source",
        f"msp={sets['msp'].path}",
        "--source",
        "real=real:shapes",
        "--pair",
        "msp:ff",
        "--pair",
        "real:ff",
        "--uses",
        3,
    )
    assert result.exit_code == 0, result.output
    assert Counter((a, b) for _c, a, _fa, b, _fb in _items(db_url)) == {
        ("msp", "ff"): 24,
        ("real", "ff"): 24,
    }


@pytest.mark.parametrize("kind, option", [("pairwise", "--source"), ("rating", "--model")])
def test_one_sample_set_under_two_labels_is_refused_and_creates_nothing(
    db_url, sets, tmp_path, kind, option
):
    """It would pair images with themselves, or count one model twice; a copy of the folder
    (the same manifest) is the same set too."""
    import shutil

    copy = tmp_path / "copy-of-ff"
    shutil.copytree(sets["ff"].path, copy)
    for other in (sets["ff"].path, copy):
        result = CliRunner().invoke(
            cli,
            [
                "study",
                "create",
                kind,
                "--name",
                "same-twice",
                option,
                f"ours={sets['ff'].path}",
                option,
                f"theirs={other}",
                "--classes",
                "1",
                "--per-class",
                "2",
                "--database-url",
                db_url,
                "--instance-dir",
                str(tmp_path / "inst"),
                *(["--uses", "2"] if kind == "pairwise" else []),
            ],
        )
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert result.output.startswith("Error: sources ours and theirs are the same sample set")
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pair", "ff:gan"], "no source labelled 'gan'"),
        (["--pair", "ff:ff"], "compares a source with itself"),
        (["--pair", "ff:msp", "--pair", "msp:ff", "--pair", "ff:real"], "listed twice"),
        (["--pair", "ff:msp"], "real are in no --pair"),
        (["--uses", "5"], "infeasible pairing ff vs msp: each sample used 5 times"),
        (["--count", "msp=9"], "msp"),
        (["--count", "msp"], "--count: expected LABEL=N"),
    ],
)
def test_bad_pairwise_settings_are_one_line(db_url, sets, tmp_path, extra, message):
    result = _create(
        db_url,
        tmp_path,
        "--source",
        f"ff={sets['ff'].path}",
        "--source",
        f"msp={sets['msp'].path}",
        "--source",
        "real=real:shapes",
        *extra,
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    with session_scope(engine_for(db_url)) as s:
        assert s.scalar(select(Study)) is None


def test_one_source_is_refused(db_url, sets, tmp_path):
    result = _create(db_url, tmp_path, "--source", f"ff={sets['ff'].path}")
    assert result.exit_code == 1 and "two or more sources" in result.output
