"""Handing out items to raters and storing their answers, race-free on SQLite and PostgreSQL.

Invariants (paper Appendix G: "each image was rated 3 times by different individuals"):
exactly k answers per item from k distinct raters, a rater never sees an item twice, items
fill evenly, unanswered leases return to the pool, a repeated submit stores nothing.

How (see also the diagram in ``models.py``):

* **Claim** = one guarded statement. ``UPDATE slot SET lease=... WHERE id = (SELECT id FROM
  slot WHERE free AND item not yet given to this rater ORDER BY slot_no, shuffle LIMIT 1
  [FOR UPDATE SKIP LOCKED]) AND free RETURNING item_id``. The outer ``AND free`` re-checks the
  row after PostgreSQL's row lock (READ COMMITTED re-evaluates it on the newest version), so
  two raters can never both win one slot; on SQLite the statement runs inside
  ``BEGIN IMMEDIATE`` and writers are serialised. ``ORDER BY slot_no`` hands out every item's
  first slot before any item's second: even filling. An expired lease counts as free.
* The hand-out row ``assignment`` carries ``UNIQUE(item_id, rater_id)``; the rater's own row
  is locked first (``SELECT ... FOR UPDATE``) so one rater's parallel requests queue up.
* **Submit** fills the slot only ``WHERE lease_token = <the rater's> AND NOT filled``; the
  answer row has ``UNIQUE(assignment_id)`` and ``UNIQUE(item_id, rater_id)``.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from study_app.db import write_session
from study_app.models import Answer, Assignment, Image, Item, Rater, Slot, Study

UNKNOWN_REASONS = ("image-failed", "cannot-decide", "other")
MAX_RESPONSE_MS = 24 * 3600 * 1000
CLAIM_RETRIES = 5


def utcnow() -> dt.datetime:
    """Naive UTC (the schema stores UTC without a zone on both databases)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_token() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits


class AnswerRejected(Exception):
    """A submit that must not be stored; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Task:
    token: str  # assignment token the browser answers with
    class_name: str
    image_tokens: tuple[str, ...]  # display order: (left[, right])
    done: int
    total: int


@dataclass(frozen=True)
class Finished:
    completion_code: str
    done: int


@dataclass(frozen=True)
class Closed:
    pass


def _insert(engine: Engine):
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def enter(engine: Engine, study_id: int, participant: str) -> int:
    """The rater id for this participant of this study, created on first entry (race-free)."""
    with write_session(engine) as session:
        stmt = _insert(engine)(Rater).values(study_id=study_id, participant=participant, created_at=utcnow())
        session.execute(stmt.on_conflict_do_nothing(index_elements=["study_id", "participant"]))
        return session.scalar(select(Rater.id).where(Rater.study_id == study_id, Rater.participant == participant))


def record_consent(engine: Engine, rater_id: int) -> None:
    with write_session(engine) as session:
        session.execute(update(Rater).where(Rater.id == rater_id, Rater.consented_at.is_(None))
                        .values(consented_at=utcnow()))


def _answered(session, rater_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Answer).where(Answer.rater_id == rater_id))


def _active_assignment(session, rater_id: int, now: dt.datetime):
    return session.execute(
        select(Assignment.token, Assignment.item_id, Assignment.left)
        .join(Slot, Slot.id == Assignment.slot_id)
        .where(Assignment.rater_id == rater_id, Assignment.answered_at.is_(None),
               Slot.lease_token == Assignment.lease_token, Slot.filled.is_(False), Slot.lease_expires_at > now)
        .order_by(Assignment.id).limit(1)
    ).first()


def _claim_slot(session, study_id: int, rater_id: int, now: dt.datetime, lease_token: str, expires: dt.datetime):
    free = and_(Slot.filled.is_(False), or_(Slot.lease_expires_at.is_(None), Slot.lease_expires_at < now))
    already_given = exists().where(Assignment.rater_id == rater_id, Assignment.item_id == Slot.item_id)
    candidate = (
        select(Slot.id)
        .where(Slot.study_id == study_id, free, ~already_given)
        .order_by(Slot.slot_no, Slot.shuffle)
        .limit(1)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers instead
        .scalar_subquery()
    )
    stmt = (
        update(Slot)
        .where(Slot.id == candidate, free)
        .values(lease_token=lease_token, lease_expires_at=expires)
        .returning(Slot.id, Slot.item_id)
    )
    return session.execute(stmt).first()


def _task(session, study: Study, token: str, item_id: int, left: str, done: int) -> Task:
    item = session.execute(select(Item.class_name, Item.image_a_id, Item.image_b_id).where(Item.id == item_id)).one()
    ids = [item.image_a_id] if item.image_b_id is None else (
        [item.image_a_id, item.image_b_id] if left == "a" else [item.image_b_id, item.image_a_id])
    tokens = dict(session.execute(select(Image.id, Image.token).where(Image.id.in_(ids))).all())
    return Task(token, item.class_name, tuple(tokens[i] for i in ids), done, study.tasks_per_rater)


def _finish(session, rater_id: int, now: dt.datetime, done: int) -> Finished:
    session.execute(update(Rater).where(Rater.id == rater_id, Rater.completion_code.is_(None))
                    .values(completion_code=secrets.token_hex(6).upper(), finished_at=now))
    return Finished(session.scalar(select(Rater.completion_code).where(Rater.id == rater_id)), done)


def next_task(engine: Engine, study: Study, rater_id: int, rng: random.Random | None = None) -> Task | Finished | Closed:
    """The rater's open task, else a newly claimed one, else their completion code."""
    rng = rng or random.SystemRandom()
    for _attempt in range(CLAIM_RETRIES):
        try:
            with write_session(engine) as session:
                # Queue this rater's parallel requests (PostgreSQL row lock; SQLite holds the write lock).
                session.execute(select(Rater.id).where(Rater.id == rater_id).with_for_update())
                now = utcnow()
                active = _active_assignment(session, rater_id, now)
                done = _answered(session, rater_id)
                if active is not None:
                    return _task(session, study, active.token, active.item_id, active.left, done)
                if done >= study.tasks_per_rater:
                    return _finish(session, rater_id, now, done)
                status = session.scalar(select(Study.status).where(Study.id == study.id))
                if status != "open":  # no new tasks; whoever answered something gets their code
                    return _finish(session, rater_id, now, done) if done else Closed()
                lease_token = new_token()
                expires = now + dt.timedelta(seconds=study.lease_seconds)
                claimed = _claim_slot(session, study.id, rater_id, now, lease_token, expires)
                if claimed is None:
                    return _finish(session, rater_id, now, done)
                left = "a" if study.kind == "rating" else rng.choice("ab")
                token = new_token()
                session.add(Assignment(study_id=study.id, token=token, item_id=claimed.item_id, rater_id=rater_id,
                                       slot_id=claimed.id, lease_token=lease_token, left=left, issued_at=now,
                                       expires_at=expires))
                session.flush()
                return _task(session, study, token, claimed.item_id, left, done)
        except IntegrityError:
            continue  # lost a race on UNIQUE(item, rater); the whole claim was rolled back
    raise AnswerRejected(503, "too many parallel requests for this rater; try again")


def parse_answer(kind: str, answer, reason) -> tuple[int | None, str | None, str | None]:
    """Validate what the browser sent: (rating, side, unknown_reason); raises AnswerRejected(400)."""
    if answer == "unknown":
        if reason not in UNKNOWN_REASONS:
            raise AnswerRejected(400, f"an unknown answer needs a reason among {', '.join(UNKNOWN_REASONS)}")
        return None, "unknown", reason
    if reason not in (None, ""):
        raise AnswerRejected(400, "a reason is only accepted with an unknown answer")
    if kind == "rating":
        if type(answer) is not int or not 1 <= answer <= 5:
            raise AnswerRejected(400, "a rating must be an integer from 1 to 5")
        return answer, None, None
    if answer not in ("left", "right"):
        raise AnswerRejected(400, "a pairwise answer must be 'left' or 'right'")
    return None, answer, None


def submit(engine: Engine, study: Study, rater_id: int, assignment_token, answer, reason, response_ms) -> int:
    """Store one answer; returns the rater's answered count. Raises AnswerRejected (nothing stored)."""
    if not isinstance(assignment_token, str) or not 10 <= len(assignment_token) <= 40:
        raise AnswerRejected(400, "missing or malformed task id")
    if type(response_ms) is not int or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise AnswerRejected(400, f"response_ms must be an integer from 0 to {MAX_RESPONSE_MS}")
    rating, side, unknown_reason = parse_answer(study.kind, answer, reason)
    with write_session(engine) as session:
        row = session.execute(
            select(Assignment.id, Assignment.item_id, Assignment.slot_id, Assignment.lease_token, Assignment.left,
                   Assignment.answered_at)
            .where(Assignment.token == assignment_token, Assignment.rater_id == rater_id,
                   Assignment.study_id == study.id)
        ).first()
        if row is None:
            raise AnswerRejected(404, "no such task for this rater")
        if row.answered_at is not None:
            raise AnswerRejected(409, "this task was already answered")
        filled = session.execute(
            update(Slot).where(Slot.id == row.slot_id, Slot.lease_token == row.lease_token, Slot.filled.is_(False))
            .values(filled=True, lease_expires_at=None)
        )
        if filled.rowcount != 1:
            raise AnswerRejected(409, "this task expired and was given to someone else")
        if side == "left":
            choice = row.left
        elif side == "right":
            choice = "b" if row.left == "a" else "a"
        else:
            choice = side  # None for ratings, "unknown"
        now = utcnow()
        session.add(Answer(study_id=study.id, assignment_id=row.id, item_id=row.item_id, rater_id=rater_id,
                           left=row.left, rating=rating, choice=choice, unknown_reason=unknown_reason,
                           response_ms=response_ms, created_at=now))
        session.execute(update(Assignment).where(Assignment.id == row.id).values(answered_at=now))
        session.flush()
        return _answered(session, rater_id)
