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

import contextlib
import datetime as dt
import random
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from study_app.db import driver_transaction
from study_app.models import Study

UNKNOWN_REASONS = ("image-failed", "cannot-decide", "other")
MAX_RESPONSE_MS = 24 * 3600 * 1000
CLAIM_RETRIES = 5
_SYSTEM_RANDOM = random.SystemRandom()


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


def enter(engine: Engine, study_id: int, participant: str) -> int:
    """The rater id for this participant of this study, created on first entry (race-free)."""
    with _transaction(engine) as cur:
        cur.run(_ENTER, {"study": study_id, "participant": participant, "now": cur.time(utcnow())})
        return cur.one(_RATER_ID, {"study": study_id, "participant": participant})[0]


def record_consent(engine: Engine, rater_id: int) -> None:
    with _transaction(engine) as cur:
        cur.run(_CONSENT, {"rater": rater_id, "now": cur.time(utcnow())})


# The hot paths run prebuilt SQL straight on the driver's cursor inside a SQLAlchemy-managed
# transaction: one statement per step and no per-call statement building, so a claim or a
# submit costs a handful of round trips and little CPU (docs/BENCHMARKS.md).
_PARAM = re.compile(r"(?<![:\w]):([a-z_]+)")


class _Sql:
    """One statement in both drivers' parameter styles (sqlite3 ``:name``, psycopg ``%(name)s``)."""

    def __init__(self, sql: str, postgresql_only: str = "", sqlite_only: str = ""):
        self.sqlite = sql.format(lock=sqlite_only)
        self.postgresql = _PARAM.sub(r"%(\1)s", sql.format(lock=postgresql_only))


@contextlib.contextmanager
def _transaction(engine: Engine, write: bool = True):
    with driver_transaction(engine, write) as cursor:
        yield _Cursor(engine.dialect.name, cursor)


def study_status(engine: Engine, study_id: int) -> str | None:
    """The study's status as stored now ("open", "closed"; None if there is no such study)."""
    with _transaction(engine, write=False) as cur:
        row = cur.one(_STATUS, {"study": study_id})
    return None if row is None else row[0]


class _Cursor:
    """The driver cursor of a transaction; timestamps go in as SQLAlchemy stores them."""

    def __init__(self, dialect: str, cursor):
        self.dialect = dialect
        self.cursor = cursor

    def time(self, value: dt.datetime):
        # SQLAlchemy's SQLite DateTime format, so ORM reads and these writes agree.
        # (isoformat with microseconds is strftime("%Y-%m-%d %H:%M:%S.%f"), several times faster)
        return value.isoformat(" ", "microseconds") if self.dialect == "sqlite" else value

    def run(self, stmt: _Sql, params: dict):
        self.cursor.execute(getattr(stmt, self.dialect), params)
        return self.cursor

    def one(self, stmt: _Sql, params: dict):
        return self.run(stmt, params).fetchone()


# Queues one rater's parallel requests (two tabs); SQLite already holds the write lock.
_LOCK_RATER = _Sql("SELECT answered FROM rater WHERE id = :rater{lock}", postgresql_only=" FOR UPDATE")
_ACTIVE = _Sql(
    'SELECT a.token, a.item_id, a."left" FROM assignment a JOIN slot s ON s.id = a.slot_id '
    "WHERE a.rater_id = :rater AND s.lease_token = a.lease_token AND s.filled = false "
    "AND s.lease_expires_at > :now ORDER BY a.id LIMIT 1"
)
_CLAIM_SQL = (
    "UPDATE slot SET lease_token = :lease, lease_expires_at = :expires "
    "WHERE id = (SELECT s.id FROM slot s "
    "  WHERE s.study_id = :study AND s.filled = false "
    "  AND (s.lease_expires_at IS NULL OR s.lease_expires_at < :now) "
    "  AND NOT EXISTS (SELECT 1 FROM assignment a WHERE a.rater_id = :rater AND a.item_id = s.item_id) "
    "  AND EXISTS (SELECT 1 FROM study WHERE id = :study AND status = 'open') "
    "  ORDER BY s.slot_no, s.shuffle LIMIT 1{lock}) "
    "AND filled = false AND (lease_expires_at IS NULL OR lease_expires_at < :now) "
    "RETURNING id, item_id"
)
_INSERT_ASSIGNMENT_COLUMNS = 'INSERT INTO assignment (study_id, token, item_id, rater_id, slot_id, lease_token, "left", issued_at, expires_at) '
_ITEM_JOINS = "JOIN item i ON i.id = {item} JOIN image ia ON ia.id = i.image_a_id LEFT JOIN image ib ON ib.id = i.image_b_id"
_CLAIM = _Sql(_CLAIM_SQL, postgresql_only=" FOR UPDATE SKIP LOCKED")
_INSERT_ASSIGNMENT = _Sql(
    _INSERT_ASSIGNMENT_COLUMNS + "VALUES (:study, :token, :item, :rater, :slot, :lease, :left, :now, :expires)"
)
# PostgreSQL: claim, hand out and describe the task in one statement (one round trip, not three;
# the same guarded UPDATE, and the INSERT runs exactly when the UPDATE claimed a slot).
_CLAIM_ISSUE_PG = _Sql(
    "WITH claimed AS (" + _CLAIM_SQL + "), "
    "issued AS (" + _INSERT_ASSIGNMENT_COLUMNS +
    "SELECT :study, :token, item_id, :rater, id, :lease, :left, :now, :expires FROM claimed RETURNING item_id) "
    "SELECT i.class_name, ia.token, ib.token FROM issued " + _ITEM_JOINS.format(item="issued.item_id"),
    postgresql_only=" FOR UPDATE SKIP LOCKED",
)
_ITEM = _Sql(
    "SELECT i.class_name, ia.token, ib.token FROM item i JOIN image ia ON ia.id = i.image_a_id "
    "LEFT JOIN image ib ON ib.id = i.image_b_id WHERE i.id = :item"
)
_STATUS = _Sql("SELECT status FROM study WHERE id = :study")
_FINISH = _Sql(
    "UPDATE rater SET completion_code = :code, finished_at = :now WHERE id = :rater AND completion_code IS NULL"
)
_CODE = _Sql("SELECT completion_code FROM rater WHERE id = :rater")
_FIND_ASSIGNMENT = _Sql(
    'SELECT a.id, a.item_id, a.slot_id, a.lease_token, a."left", s.filled, s.lease_token '
    "FROM assignment a JOIN slot s ON s.id = a.slot_id "
    "WHERE a.token = :token AND a.rater_id = :rater AND a.study_id = :study"
)
_FILL_SLOT = _Sql(
    "UPDATE slot SET filled = true, lease_expires_at = NULL WHERE id = :slot AND lease_token = :lease AND filled = false"
)
# PostgreSQL: find the assignment and fill its slot in one statement. The UPDATE changes the
# slot only under the same conditions as _FILL_SLOT; the last column says whether it did.
_FIND_FILL_PG = _Sql(
    'WITH found AS (SELECT a.id, a.item_id, a.slot_id, a.lease_token, a."left", s.filled, s.lease_token AS slot_lease '
    "  FROM assignment a JOIN slot s ON s.id = a.slot_id "
    "  WHERE a.token = :token AND a.rater_id = :rater AND a.study_id = :study), "
    "filled AS (UPDATE slot SET filled = true, lease_expires_at = NULL FROM found "
    "  WHERE slot.id = found.slot_id AND slot.lease_token = found.lease_token AND slot.filled = false "
    "  RETURNING slot.id) "
    'SELECT found.id, found.item_id, found.slot_id, found.lease_token, found."left", found.filled, found.slot_lease, '
    "EXISTS (SELECT 1 FROM filled) FROM found"
)
_INSERT_ANSWER_SQL = (
    'INSERT INTO answer (study_id, assignment_id, item_id, rater_id, "left", rating, choice, unknown_reason, '
    "response_ms, created_at) VALUES (:study, :assignment, :item, :rater, :left, :rating, :choice, :reason, :ms, :now)"
)
_INSERT_ANSWER = _Sql(_INSERT_ANSWER_SQL)
_ENTER = _Sql(
    "INSERT INTO rater (study_id, participant, created_at, answered) VALUES (:study, :participant, :now, 0) "
    "ON CONFLICT (study_id, participant) DO NOTHING"
)
_RATER_ID = _Sql("SELECT id FROM rater WHERE study_id = :study AND participant = :participant")
_CONSENT = _Sql("UPDATE rater SET consented_at = :now WHERE id = :rater AND consented_at IS NULL")
_COUNT_ANSWER_SQL = "UPDATE rater SET answered = answered + 1 WHERE id = :rater RETURNING answered"
_COUNT_ANSWER = _Sql(_COUNT_ANSWER_SQL)
# PostgreSQL: store the answer and count it in one statement (both always run; a unique
# violation of the INSERT fails the whole statement).
_STORE_COUNT_PG = _Sql(
    "WITH stored AS (" + _INSERT_ANSWER_SQL + " RETURNING id) " + _COUNT_ANSWER_SQL
)


def _integrity_errors(engine: Engine) -> tuple[type[BaseException], ...]:
    return (IntegrityError, engine.dialect.dbapi.IntegrityError)


def _task(cur: _Cursor, study: Study, token: str, item_id: int, left: str, done: int) -> Task:
    return _described(study, token, cur.one(_ITEM, {"item": item_id}), left, done)


def _described(study: Study, token: str, item_row, left: str, done: int) -> Task:
    class_name, token_a, token_b = item_row
    tokens = (token_a,) if token_b is None else ((token_a, token_b) if left == "a" else (token_b, token_a))
    return Task(token, class_name, tokens, done, study.tasks_per_rater)


def _finish(cur: _Cursor, rater_id: int, now: dt.datetime, done: int) -> Finished:
    cur.run(_FINISH, {"code": secrets.token_hex(6).upper(), "now": cur.time(now), "rater": rater_id})
    return Finished(cur.one(_CODE, {"rater": rater_id})[0], done)


def _next_locked(cur: _Cursor, study: Study, rater_id: int, done: int, rng) -> Task | Finished | Closed:
    """``next_task`` inside a transaction that already holds the rater's row lock (``done``:
    the rater's answered count read under that lock)."""
    now = utcnow()
    active = cur.one(_ACTIVE, {"rater": rater_id, "now": cur.time(now)})
    if active is not None:
        return _task(cur, study, active[0], active[1], active[2], done)
    if done >= study.tasks_per_rater:
        return _finish(cur, rater_id, now, done)
    lease, token = new_token(), new_token()
    expires = now + dt.timedelta(seconds=study.lease_seconds)
    left = "a" if study.kind == "rating" else (rng or _SYSTEM_RANDOM).choice("ab")
    params = {"lease": lease, "expires": cur.time(expires), "study": study.id, "now": cur.time(now), "rater": rater_id}
    if cur.dialect == "postgresql":
        params.update(token=token, left=left)
        issued = cur.one(_CLAIM_ISSUE_PG, params)
        claimed = issued
    else:
        claimed = cur.one(_CLAIM, params)
    if claimed is None:
        if cur.one(_STATUS, {"study": study.id})[0] != "open":
            # No new tasks; whoever answered something gets their code.
            return _finish(cur, rater_id, now, done) if done else Closed()
        return _finish(cur, rater_id, now, done)
    if cur.dialect == "postgresql":
        return _described(study, token, issued, left, done)
    slot_id, item_id = claimed
    cur.run(_INSERT_ASSIGNMENT, {"study": study.id, "token": token, "item": item_id, "rater": rater_id,
                                 "slot": slot_id, "lease": lease, "left": left, "now": cur.time(now),
                                 "expires": cur.time(expires)})
    return _task(cur, study, token, item_id, left, done)


def next_task(engine: Engine, study: Study, rater_id: int, rng: random.Random | None = None) -> Task | Finished | Closed:
    """The rater's open task, else a newly claimed one, else their completion code."""
    for _attempt in range(CLAIM_RETRIES):
        try:
            with _transaction(engine) as cur:
                done = cur.one(_LOCK_RATER, {"rater": rater_id})[0]
                return _next_locked(cur, study, rater_id, done, rng)
        except _integrity_errors(engine):
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


def _check_submit(study: Study, assignment_token, answer, reason, response_ms):
    if not isinstance(assignment_token, str) or not 10 <= len(assignment_token) <= 40:
        raise AnswerRejected(400, "missing or malformed task id")
    if type(response_ms) is not int or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise AnswerRejected(400, f"response_ms must be an integer from 0 to {MAX_RESPONSE_MS}")
    return parse_answer(study.kind, answer, reason)


def _store(cur: _Cursor, study: Study, rater_id: int, assignment_token: str, parsed, response_ms: int) -> int:
    """Store one validated answer in the open transaction; returns the rater's answered count
    (and, by updating it, holds the rater's row lock until the transaction ends)."""
    rating, side, unknown_reason = parsed
    find = {"token": assignment_token, "rater": rater_id, "study": study.id}
    row = cur.one(_FIND_FILL_PG if cur.dialect == "postgresql" else _FIND_ASSIGNMENT, find)
    if row is None:
        raise AnswerRejected(404, "no such task for this rater")
    assignment_id, item_id, slot_id, lease, left, filled, slot_lease = row[:7]
    if filled and slot_lease == lease:
        raise AnswerRejected(409, "this task was already answered")  # (nothing was changed)
    if cur.dialect == "postgresql":
        stored = row[7]
    else:
        stored = cur.run(_FILL_SLOT, {"slot": slot_id, "lease": lease}).rowcount == 1
    if not stored:
        raise AnswerRejected(409, "this task expired and was given to someone else")
    if side == "left":
        choice = left
    elif side == "right":
        choice = "b" if left == "a" else "a"
    else:
        choice = side  # None for ratings, "unknown"
    params = {"study": study.id, "assignment": assignment_id, "item": item_id, "rater": rater_id, "left": left,
              "rating": rating, "choice": choice, "reason": unknown_reason, "ms": response_ms, "now": cur.time(utcnow())}
    if cur.dialect == "postgresql":
        return cur.one(_STORE_COUNT_PG, params)[0]
    cur.run(_INSERT_ANSWER, params)
    return cur.one(_COUNT_ANSWER, {"rater": rater_id})[0]


def submit(engine: Engine, study: Study, rater_id: int, assignment_token, answer, reason, response_ms) -> int:
    """Store one answer; returns the rater's answered count. Raises AnswerRejected (nothing stored)."""
    parsed = _check_submit(study, assignment_token, answer, reason, response_ms)
    try:
        with _transaction(engine) as cur:
            return _store(cur, study, rater_id, assignment_token, parsed, response_ms)
    except _integrity_errors(engine):
        # Only reachable through a concurrent duplicate of this very answer: nothing stored twice.
        raise AnswerRejected(409, "this task was already answered") from None


def submit_and_next(engine: Engine, study: Study, rater_id: int, assignment_token, answer, reason, response_ms,
                    rng: random.Random | None = None) -> tuple[int, Task | Finished | Closed | None]:
    """``submit`` then ``next_task`` in one transaction (one commit, one pool checkout; the
    rater's row lock taken by the submit covers the claim): (answered count, next task).

    Raises AnswerRejected exactly when ``submit`` would (nothing stored). If the combined
    transaction hits a unique constraint, nothing of it was stored and the two steps run
    separately, as ``submit`` and ``next_task`` do; the next task is None if that claim fails.
    """
    parsed = _check_submit(study, assignment_token, answer, reason, response_ms)
    try:
        with _transaction(engine) as cur:
            done = _store(cur, study, rater_id, assignment_token, parsed, response_ms)
            return done, _next_locked(cur, study, rater_id, done, rng)
    except _integrity_errors(engine):
        pass  # rolled back as a whole: a concurrent duplicate of this answer, or a lost claim race
    done = submit(engine, study, rater_id, assignment_token, answer, reason, response_ms)
    try:
        return done, next_task(engine, study, rater_id, rng)
    except AnswerRejected:
        return done, None
