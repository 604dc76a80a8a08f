"""`hvqeval report --database URL --study NAME` reads a real study database (SQLite) without Flask
and reports exactly what the CSV export of the same study gives."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from sqlalchemy import select

from hvqeval.cli import cli
from hvqeval.sample_set import SampleSetWriter
from study_app import assign
from study_app.create import SourceSpec, StudySettings, create_study
from study_app.db import make_engine, session_scope, upgrade
from study_app.export import write_csv
from study_app.schema import Study


def _sample_set(path, model, seed):
    rng = np.random.default_rng(seed)
    writer = SampleSetWriter(
        path, model=model, image_size=8, seed=seed, temperature=1.0, sampler="cached"
    )
    for c in (3, 5):
        for _ in range(2):
            writer.add(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), c, f"c{c} ({c})")
    return writer.close()


def test_database_and_csv_give_the_same_report(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    upgrade(url)
    ff, msp = (
        _sample_set(tmp_path / "ff", "tiny_ff", 1),
        _sample_set(tmp_path / "msp", "tiny_msp", 2),
    )
    create_study(
        url,
        StudySettings(
            name="ab",
            kind="pairwise",
            sources=(SourceSpec("MSP", str(msp.path)), SourceSpec("FF", str(ff.path))),
            classes=(3, 5),
            per_class=2,
            pairs_per_class=4,
            answers_per_item=3,
            tasks_per_rater=8,
            no_examples=True,
        ),
        tmp_path,
    )
    engine = make_engine(url)
    with session_scope(engine) as session:
        study = session.scalar(select(Study).where(Study.name == "ab"))
        session.expunge(study)
    raters = [assign.enter(engine, study, f"p{i}").rater_id for i in range(4)]
    for r in raters:
        assign.record_consent(engine, r)
    answered = 0
    for r in raters:
        while not isinstance(task := assign.next_task(engine, study.public_id, r), assign.Finished):
            if answered == 5:
                assign.submit(
                    engine, study.public_id, r, task.token, "unknown", "image-failed", 1500
                )
            else:
                assign.submit(
                    engine,
                    study.public_id,
                    r,
                    task.token,
                    "left" if answered % 3 else "right",
                    None,
                    1500,
                )
            answered += 1
    csv_path = tmp_path / "ab.csv"
    assert write_csv(url, "ab", csv_path) == 24  # 2 classes x 4 pairs x 3 answers
    engine.dispose()

    runner = CliRunner()
    from_db = runner.invoke(
        cli, ["report", "table3", "--database", url, "--study", "ab", "--all-stats"]
    )
    from_csv = runner.invoke(cli, ["report", "table3", "--responses", str(csv_path), "--all-stats"])
    assert from_db.exit_code == 0, from_db.output
    assert from_db.output == from_csv.output
    assert (
        "| MSP | FF |" in from_db.output and "| 1 | 24 | 8 |" in from_db.output
    )  # 1 unusable, 24 answers, 8 pairs
    missing = runner.invoke(cli, ["report", "table3", "--database", url, "--study", "nope"])
    assert missing.exit_code == 1 and "no study named 'nope'" in missing.output


def test_analysis_imports_neither_flask_nor_torch():
    """Every import in analysis/ (parsed, including imports inside functions) stays off Flask,
    torch and the evaluation suite; the study database is reached only through study_app.export."""
    import ast
    from pathlib import Path

    import analysis

    for path in Path(analysis.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert root not in ("flask", "flask_wtf", "torch", "torchvision", "hvqeval"), (
                    path.name,
                    name,
                )
                assert root != "study_app" or name == "study_app.export", (path.name, name)
