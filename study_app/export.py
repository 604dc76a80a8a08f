"""Export of a study's answers: one row per answer (the contract read by ``analysis``).

Columns (README, "Human studies", documents each)::

    study, kind, rater, item, class_id, class_name, model_a, sample_a, model_b, sample_b,
    left, rating, choice, unknown_reason, response_ms, created_at,
    platform, platform_study, platform_session, completion_code,
    role, exposure_ms, check_passed, check_pass_rate

``role`` is ``task`` (counted), ``catch`` or ``practice`` (attention checks, ``checks.py``);
``check_passed`` is 1/0 on catch and practice rows (empty on one answered "an image did not
load": no result); ``check_pass_rate`` is the rater's share of catch answers passed (of those
with a result) (on every row of the rater; empty when they answered no catch item).

Flask-free on purpose: ``hvqeval report --database URL --study NAME`` (the CLI layer) reads
answers with ``read_export`` and hands ``analysis`` the rows.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from study_app.checks import pass_rates
from study_app.db import open_database, session_scope
from study_app.schema import Answer, Image, Item, Rater, Source, Study, no_study_named

EXPORT_COLUMNS = (
    "study",
    "kind",
    "rater",
    "item",
    "class_id",
    "class_name",
    "model_a",
    "sample_a",
    "model_b",
    "sample_b",
    "left",
    "rating",
    "choice",
    "unknown_reason",
    "response_ms",
    "created_at",
    "platform",
    "platform_study",
    "platform_session",
    "completion_code",
    "role",
    "exposure_ms",
    "check_passed",
    "check_pass_rate",
)


def export_rows(engine: Engine, study_name: str) -> list[dict]:
    """Every answer of ``study_name`` as a dict keyed by EXPORT_COLUMNS, ordered by time.

    Empty cells are ``None`` (``model_b``/``sample_b`` in rating studies, ``rating`` in
    pairwise studies and for unknown answers, ``choice`` for ratings, ``unknown_reason``).
    """
    image_a, image_b = aliased(Image), aliased(Image)
    source_a, source_b = aliased(Source), aliased(Source)
    with session_scope(engine, read_only=True) as session:
        study = session.execute(
            select(Study.id, Study.kind).where(Study.name == study_name)
        ).first()
        if study is None:
            raise no_study_named(session, study_name)
        rates = pass_rates(engine, study.id)
        query = (
            select(
                Rater.participant,
                Item.number,
                Item.class_id,
                Item.class_name,
                source_a.label,
                source_a.sample_set_id,
                image_a.file,
                source_b.label,
                source_b.sample_set_id,
                image_b.file,
                Answer.left,
                Answer.rating,
                Answer.choice,
                Answer.unknown_reason,
                Answer.response_ms,
                Answer.created_at,
                Rater.platform,
                Rater.platform_study,
                Rater.platform_session,
                Rater.completion_code,
                Item.role,
                Answer.exposure_ms,
                Answer.passed,
                Rater.id,
            )
            .select_from(Answer)
            .join(Rater, Rater.id == Answer.rater_id)
            .join(Item, Item.id == Answer.item_id)
            .join(image_a, image_a.id == Item.image_a_id)
            .join(source_a, source_a.id == image_a.source_id)
            .outerjoin(image_b, image_b.id == Item.image_b_id)
            .outerjoin(source_b, source_b.id == image_b.source_id)
            .where(Answer.study_id == study.id)
            .order_by(Answer.created_at, Answer.id)
        )
        rows = []
        for (
            rater,
            number,
            class_id,
            class_name,
            model_a,
            set_a,
            file_a,
            model_b,
            set_b,
            file_b,
            left,
            rating,
            choice,
            reason,
            ms,
            created,
            platform,
            p_study,
            p_session,
            code,
            role,
            exposure,
            check_passed,
            rater_id,
        ) in session.execute(query):
            ok, given = rates.get(rater_id, (0, 0))
            rows.append(
                {
                    "study": study_name,
                    "kind": study.kind,
                    "rater": rater,
                    "item": number,
                    "class_id": class_id,
                    "class_name": class_name,
                    "model_a": model_a,
                    "sample_a": f"{set_a}/{file_a}",
                    "model_b": model_b,
                    "sample_b": f"{set_b}/{file_b}" if file_b is not None else None,
                    "left": left,
                    "rating": rating,
                    "choice": choice,
                    "unknown_reason": reason,
                    "response_ms": ms,
                    "created_at": created.isoformat(timespec="milliseconds") + "Z",
                    "platform": platform,
                    "platform_study": p_study,
                    "platform_session": p_session,
                    "completion_code": code,
                    "role": role,
                    "exposure_ms": exposure,
                    "check_passed": None if check_passed is None else int(check_passed),
                    "check_pass_rate": round(ok / given, 6) if given else None,
                }
            )
        return rows


def rows_to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in EXPORT_COLUMNS})
    return buffer.getvalue()


def write_csv(database_url: str, study_name: str, out: str | Path) -> int:
    """Write the export CSV atomically, gzip-compressed when ``out`` ends in ``.gz`` (as the
    reports read it); returns the number of answers written."""
    with open_database(database_url) as engine:
        rows = export_rows(engine, study_name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    data = rows_to_csv(rows).encode("utf-8")
    if out.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime 0: the same answers give the same file
    tmp.write_bytes(data)
    tmp.replace(out)
    return len(rows)


def read_export(database_url: str, study_names) -> list[dict]:
    """The export rows of ``study_names`` in an existing, current study database."""
    with open_database(database_url) as engine:
        return [row for name in study_names for row in export_rows(engine, name)]
