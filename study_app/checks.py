"""Handing out catch and practice items and storing their answers (attention checks).

A study with checks (``Study.catch_items`` / ``Study.practice_items``, built by
``catch_items.py``) shows every rater its practice items first, in order and labelled as
practice, then mixes its catch items unannounced into the counted tasks: among the rater's
``tasks_per_rater + catch_items`` answers, the catch items take positions drawn from the study
seed and the participant id (reproducible), in an order drawn the same way.

A catch/practice hand-out is an ``assignment`` row on the item's one filled slot (so the claim
of counted tasks never sees it and it never counts toward their k answers); its answer is an
``answer`` row with ``passed`` set: pairwise, the uncorrupted image (side "a") was chosen;
rating, a rating of at most ``PASS_RATING_MAX``; "Can't answer: an image did not load" is neither
(``passed`` stays NULL). A rater's pass rate is the share of their catch answers that passed,
over the catch answers with a result (practice answers are stored but not counted).

A rater gets a practice or catch item only while counted work is theirs to do: a counted slot
they could claim now, or (for a catch item due after their last counted task) all their counted
tasks done. A rater arriving at a full study goes straight to "no tasks left", with no practice
and no completion code. Both run inside the
transaction of ``assign.py`` with the rater's row locked, so the usual guarantees hold: an item
once per rater, a repeated submit stores nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

from sqlalchemy import Connection, Engine, case, exists, func, select

from study_app.db import session_scope
from study_app.handout import choice_of, hand_out, new_token, store_answer
from study_app.schema import Answer, Assignment, Item, Rater, Slot, Study, lease_is_free

CHECK_ROLES = ("catch", "practice")
PASS_RATING_MAX = 2  # a corrupted image rated at most this passes a rating catch item


def has_checks(study: Study) -> bool:
    return bool(study.catch_items or study.practice_items)


def catch_positions(study: Study, participant: str) -> set[int]:
    """Where the rater's catch items fall among their counted + catch answers (0-based)."""
    sequence = study.tasks_per_rater + study.catch_items
    rng = random.Random(f"{study.seed}:catch-positions:{participant}")
    return set(rng.sample(range(sequence), study.catch_items))


def passed(
    kind: str, rating: int | None, choice: str | None, unknown_reason: str | None = None
) -> bool | None:
    """Whether an answer to a catch/practice item is right; None (no result, left out of the
    pass rate) when the rater said an image did not load: that is no lapse of attention. Any
    other unknown answer ("cannot decide", "other") fails: the right answer is obvious."""
    if unknown_reason == "image-failed":
        return None
    if kind == "pairwise":
        return choice == "a"
    return rating is not None and rating <= PASS_RATING_MAX


def _check_rows(connection: Connection, study: Study, rater_id: int):
    return connection.execute(
        select(Assignment.token, Assignment.item_id, Assignment.left, Item.role, Answer.id)
        .join(Item, Item.id == Assignment.item_id)
        .outerjoin(Answer, Answer.assignment_id == Assignment.id)
        .where(Assignment.rater_id == rater_id, Item.role.in_(CHECK_ROLES))
        .order_by(Assignment.id)
    ).all()


def counted_work_left(
    connection: Connection, study: Study, rater_id: int, now: dt.datetime
) -> bool:
    """Whether a counted slot is free for this rater now (the claim's own conditions, without
    claiming: the claim that follows the practice items takes the slot)."""
    free = lease_is_free(now)
    seen = exists().where(Assignment.rater_id == rater_id, Assignment.item_id == Slot.item_id)
    return bool(
        connection.scalar(
            select(exists().where(Slot.study_id == study.id, Slot.filled.is_(False), free, ~seen))
        )
    )


def next_check(
    connection: Connection,
    study: Study,
    rater_id: int,
    participant: str,
    done: int,
    now: dt.datetime,
) -> tuple[str, int, str, str] | None:
    """The rater's open catch/practice item, else a new one when the rater is due one:
    (assignment token, item id, left side, role); None when the next answer is a counted task.
    The hand-out is made as for any task (``handout.hand_out``)."""
    rows = _check_rows(connection, study, rater_id)
    for row in rows:
        if row.id is None:
            return row.token, row.item_id, row.left, row.role
    if connection.scalar(select(Study.status).where(Study.id == study.id)) != "open":
        return None
    if done < study.tasks_per_rater and not counted_work_left(connection, study, rater_id, now):
        return None  # no practice or catch item without counted work to follow
    practice_done = sum(r.role == "practice" for r in rows)
    catch_done = sum(r.role == "catch" for r in rows)
    role = None
    if practice_done < study.practice_items:
        role, index = "practice", practice_done
    elif catch_done < study.catch_items and done + catch_done in catch_positions(
        study, participant
    ):
        role, index = "catch", catch_done
    if role is None:
        return None
    candidates = connection.execute(
        select(Item.id, Item.number, Slot.id.label("slot_id"))
        .join(Slot, Slot.item_id == Item.id)
        .where(Item.study_id == study.id, Item.role == role)
        .order_by(Item.number)
    ).all()
    if role == "catch":  # each rater meets the catch items in an order of their own
        random.Random(f"{study.seed}:catch-order:{participant}").shuffle(candidates)
    chosen = candidates[index]
    token, left = hand_out(
        connection,
        study,
        rater_id=rater_id,
        item_id=chosen.id,
        item_number=chosen.number,
        slot_id=chosen.slot_id,
        lease=new_token(),
        participant=participant,
        now=now,
    )
    return token, chosen.id, left, role


def store_check(
    connection: Connection,
    study: Study,
    rater_id: int,
    assignment_token: str,
    parsed,
    response_ms: int,
    now: dt.datetime,
) -> int | None:
    """Store the answer to a catch/practice hand-out; the rater's counted answers (unchanged),
    or None when the token is not a catch/practice hand-out of this rater. A second answer to
    the same hand-out breaks ``UNIQUE(answer.assignment_id)``: ``assign.submit`` answers 409."""
    found = connection.execute(
        select(Assignment.id, Assignment.item_id, Assignment.left)
        .join(Item, Item.id == Assignment.item_id)
        .where(
            Assignment.token == assignment_token,
            Assignment.rater_id == rater_id,
            Assignment.study_id == study.id,
            Item.role.in_(CHECK_ROLES),
        )
    ).first()
    if found is None:
        return None
    rating, side, unknown_reason = parsed
    choice = choice_of(side, found.left)
    store_answer(
        connection,
        study,
        assignment_id=found.id,
        item_id=found.item_id,
        rater_id=rater_id,
        left=found.left,
        rating=rating,
        choice=choice,
        unknown_reason=unknown_reason,
        response_ms=response_ms,
        now=now,
        passed=passed(study.kind, rating, choice, unknown_reason),
    )
    return connection.scalar(select(Rater.answered).where(Rater.id == rater_id))


def shown_done(connection: Connection, study: Study, rater_id: int, answered: int) -> int:
    """The rater's answers as progress counts them: counted plus catch answers (practice
    answers are not progress), so a catch answer moves the count like any other."""
    if not study.catch_items:
        return answered
    return answered + connection.scalar(
        select(func.count(Answer.id))
        .join(Item, Item.id == Answer.item_id)
        .where(Answer.rater_id == rater_id, Item.role == "catch")
    )


def with_progress(connection: Connection, study: Study, rater_id: int, result: object):
    """The task (or the completion) with the progress the rater sees: practice n of P; else the
    counted and catch answers given of ``tasks_per_rater + catch_items`` (catch items stay
    unannounced); a completion counts the same answers."""
    if not has_checks(study):
        return result
    if hasattr(result, "completion_code"):  # assign.Finished
        answered = connection.scalar(select(Rater.answered).where(Rater.id == rater_id))
        if not answered:  # never got a counted task: nothing to count
            return result
        return dataclasses.replace(result, done=shown_done(connection, study, rater_id, answered))
    if getattr(result, "role", None) is None:  # not an assign.Task
        return result
    counts = dict(
        connection.execute(
            select(Item.role, func.count(Answer.id))
            .select_from(Answer)
            .join(Item, Item.id == Answer.item_id)
            .where(Answer.rater_id == rater_id, Item.role.in_(CHECK_ROLES))
            .group_by(Item.role)
        ).all()
    )
    if result.role == "practice":
        return dataclasses.replace(
            result, done=counts.get("practice", 0), total=study.practice_items
        )
    answered = connection.scalar(select(Rater.answered).where(Rater.id == rater_id))
    return dataclasses.replace(
        result,
        done=shown_done(connection, study, rater_id, answered),
        total=study.tasks_per_rater + study.catch_items,
    )


def pass_rates(engine: Engine, study_id: int) -> dict[int, tuple[int, int]]:
    """Per rater id: (catch answers passed, catch answers with a result); an answer "an image did
    not load" has none and is left out; raters without any are absent."""
    with session_scope(engine, read_only=True) as session:
        rows = session.execute(
            select(
                Answer.rater_id,
                func.sum(case((Answer.passed.is_(True), 1), else_=0)),
                func.count(Answer.id),
            )
            .join(Item, Item.id == Answer.item_id)
            .where(Answer.study_id == study_id, Item.role == "catch", Answer.passed.is_not(None))
            .group_by(Answer.rater_id)
        ).all()
    return {rater: (int(ok or 0), int(n)) for rater, ok, n in rows}


def participant_pass_rates(engine: Engine, study_name: str) -> dict[str, tuple[int, int]]:
    """Per participant id of the study ``study_name``: (catch answers passed, given)."""
    with session_scope(engine, read_only=True) as session:
        study_id = session.scalar(select(Study.id).where(Study.name == study_name))
        names = dict(
            session.execute(
                select(Rater.id, Rater.participant).where(Rater.study_id == study_id)
            ).all()
        )
    return {names[r]: counts for r, counts in pass_rates(engine, study_id).items()}
