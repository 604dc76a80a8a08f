"""Completion codes: the stored code of every rater, and a platform's CSV of pasted codes checked
against them (``hvqeval study codes STUDY --check FILE``).

Platforms export what participants pasted with their own column names; the first column of
each kind found is used (case-insensitive):

* participant: ``participant_id``, ``Participant id``, ``PROLIFIC_PID``, ``WorkerId``, ``workerId``, ``participant``
* code:        ``completion_code``, ``Completion code``, ``Answer.completion_code``, ``Answer.surveycode``, ``code``
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from study_app.db import session_scope
from study_app.errors import StudyError
from study_app.schema import Rater, Study, no_study_named

PARTICIPANT_COLUMNS = (
    "participant_id",
    "participant id",
    "prolific_pid",
    "workerid",
    "participant",
)
CODE_COLUMNS = (
    "completion_code",
    "completion code",
    "answer.completion_code",
    "answer.surveycode",
    "code",
)


@dataclass(frozen=True)
class RaterCode:
    participant: str
    platform: str | None
    platform_study: str | None
    platform_session: str | None
    answered: int
    completion_code: str | None
    consented: bool = True  # False: opened the link and never consented (a visitor, no rater)


@dataclass(frozen=True)
class Mismatch:
    participant: str
    pasted: str | None  # None: the platform has no submission of this rater
    stored: str | None  # None: no rater of this id in the study, or they never finished
    problem: str


def rater_codes(engine: Engine, study_name: str, visitors: bool = False) -> list[RaterCode]:
    """The raters of the study (who gave consent) in order of arrival, with their platform ids
    and codes; ``visitors`` adds the participants who opened the link and never consented."""
    with session_scope(engine, read_only=True) as s:
        study_id = s.scalar(select(Study.id).where(Study.name == study_name))
        if study_id is None:
            raise no_study_named(s, study_name)
        rows = s.execute(
            select(
                Rater.participant,
                Rater.platform,
                Rater.platform_study,
                Rater.platform_session,
                Rater.answered,
                Rater.completion_code,
                Rater.consented_at.is_not(None),
            )
            .where(Rater.study_id == study_id)
            .order_by(Rater.id)
        ).all()
    # SQLite answers the comparison with 0/1
    return [RaterCode(*r[:-1], consented=bool(r[-1])) for r in rows if visitors or r[-1]]


def _column(header: list[str], names: tuple[str, ...], what: str, path: Path) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    raise StudyError(
        f"--check {path}: no {what} column (expected one of {', '.join(names)}); "
        f"found {', '.join(header) or 'no header'}"
    )


def read_pasted(path: str | Path) -> dict[str, str]:
    """{participant: pasted code} from a platform CSV (one line naming the problem otherwise)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise StudyError(f"--check {path}: cannot read it ({err})") from None
    if not rows:
        raise StudyError(
            f"--check {path} is empty; export the submissions from the platform as CSV"
        )
    who = _column(rows[0], PARTICIPANT_COLUMNS, "participant", path)
    code = _column(rows[0], CODE_COLUMNS, "completion-code", path)
    pasted = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(who, code):
            raise StudyError(
                f"--check {path} line {line}: {len(row)} cells, expected {len(rows[0])}"
            )
        pasted[row[who].strip()] = row[code].strip()
    return pasted


def check_codes(stored: list[RaterCode], pasted: dict[str, str]) -> list[Mismatch]:
    """Every disagreement between the platform's submissions and the stored codes."""
    by_participant = {r.participant: r for r in stored}
    found = []
    for participant, code in pasted.items():
        rater = by_participant.get(participant)
        if rater is None:
            found.append(Mismatch(participant, code, None, "never entered this study"))
        elif not rater.consented:
            found.append(Mismatch(participant, code, None, "opened the link, never consented"))
        elif rater.completion_code is None:
            found.append(
                Mismatch(participant, code, None, f"did not finish ({rater.answered} answers)")
            )
        elif code.upper() != rater.completion_code.upper():
            found.append(Mismatch(participant, code, rater.completion_code, "wrong code"))
    for rater in stored:
        if rater.completion_code is not None and rater.participant not in pasted:
            found.append(
                Mismatch(
                    rater.participant, None, rater.completion_code, "finished but no submission"
                )
            )
    return found
