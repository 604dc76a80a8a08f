"""What every hand-out to a rater is made of, counted task or attention check alike.

``assign.py`` (counted tasks) and ``checks.py`` (catch and practice items) both hand an item to
a rater as an ``assignment`` row and store its answer as an ``answer`` row; the pieces they
share live here, so the two paths cannot drift apart: the random tokens, which side image A is
shown on, the assignment row, and the answer row with its left/right turned back into a/b.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets

from sqlalchemy import Connection, insert

from study_app.schema import Answer, Assignment, Study

# Built once; each execution passes its row as parameters (see assign.py's docstring).
INSERT_ASSIGNMENT = insert(Assignment)
INSERT_ANSWER = insert(Answer)


def new_token() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits


def side_of_a(study: Study, item_number: int, participant: str) -> str:
    """Which side image A of a pairwise item is shown on for this rater: "a" (left) or "b".

    Drawn from the study seed, the item and the rater, so a study recreated with the same seed
    shows every rater the same sides; over many showings both sides occur about equally often.
    Rating studies show one image, on the left.
    """
    if study.kind == "rating":
        return "a"
    return random.Random(f"{study.seed}:{item_number}:{participant}").choice("ab")


def hand_out(
    connection: Connection,
    study: Study,
    *,
    rater_id: int,
    item_id: int,
    item_number: int,
    slot_id: int,
    lease: str,
    participant: str,
    now: dt.datetime,
) -> tuple[str, str]:
    """Insert the assignment of an item to a rater; (its token, the side image A is shown on)."""
    token, left = new_token(), side_of_a(study, item_number, participant)
    connection.execute(
        INSERT_ASSIGNMENT,
        {
            "study_id": study.id,
            "token": token,
            "item_id": item_id,
            "rater_id": rater_id,
            "slot_id": slot_id,
            "lease_token": lease,
            "left": left,
            "issued_at": now,
            "expires_at": now + dt.timedelta(seconds=study.lease_seconds),
        },
    )
    return token, left


def choice_of(side: str | None, left: str) -> str | None:
    """The source a rater chose ("a"/"b") from the side they clicked ("left"/"right") and the
    side image A was shown on; a rating (no side) has no choice."""
    return {"left": left, "right": "b" if left == "a" else "a"}.get(side, side)


def store_answer(
    connection: Connection,
    study: Study,
    *,
    assignment_id: int,
    item_id: int,
    rater_id: int,
    left: str,
    rating: int | None,
    choice: str | None,
    unknown_reason: str | None,
    response_ms: int,
    now: dt.datetime,
    passed: bool | None = None,
) -> None:
    """Insert the answer to an assignment. It keeps a/b (which source, ``choice_of``), not
    left/right (where it was shown); ``passed`` only for catch and practice items."""
    connection.execute(
        INSERT_ANSWER,
        {
            "study_id": study.id,
            "assignment_id": assignment_id,
            "item_id": item_id,
            "rater_id": rater_id,
            "left": left,
            "rating": rating,
            "choice": choice,
            "unknown_reason": unknown_reason,
            "response_ms": response_ms,
            "created_at": now,
            "exposure_ms": study.exposure_ms,
            "passed": passed,
        },
    )
