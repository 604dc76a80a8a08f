"""Database schema of the study app (typed SQLAlchemy 2.0 models; paper Section 7.3, Appendix G).

How the tables guarantee "exactly k distinct raters per item" without read-then-write races:

    item ──< slot (k per item, slot_no 0..k-1)         a slot is free, leased, or filled
      │         ▲ lease_token (who holds it now)
      └──< assignment (item, rater) UNIQUE             every hand-out, kept as history
                 └── answer (assignment) UNIQUE, (item, rater) UNIQUE

* A claim is one guarded ``UPDATE slot ... WHERE <free> RETURNING`` (see ``assign.py``);
  at most k slots exist per item, so at most k answers can ever be stored for it.
* ``UNIQUE(item_id, rater_id)`` on assignments means a rater never gets an item twice,
  even from two browser tabs at once, and ``UNIQUE(item_id, rater_id)`` on answers means
  k answers come from k distinct raters.
* A submit fills the slot only if the rater still holds its lease token; a second submit
  of the same form finds the slot filled and stores nothing.
* Attention checks (``checks.py``): catch and practice items (``item.role``) have one slot,
  filled from the start, so the claim above never takes them; each rater's hand-out of one is an
  assignment on that slot and its answer says whether it ``passed``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from study_app.errors import StudyNotFoundError

KINDS = ("rating", "pairwise")
ROLES = ("task", "catch", "practice")
STATUSES = ("open", "closed")
CHOICES = ("a", "b", "unknown")


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # opaque id in the raters' link
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="open")
    question: Mapped[str] = mapped_column(String(200))
    answers_per_item: Mapped[int] = mapped_column(Integer)  # k
    tasks_per_rater: Mapped[int] = mapped_column(Integer)
    lease_seconds: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    settings_json: Mapped[str] = mapped_column(Text, default="{}")  # how the study was created
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # Crowd platforms: one code for every rater (Prolific's per-study code; None: a random code
    # per rater) and where a finished rater is sent (Prolific's completion URL).
    completion_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    completion_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Attention checks (checks.py): catch items each rater gets, mixed in unannounced; practice
    # items shown first; the exposure limit of the task page (image hidden after N ms; None: off).
    catch_items: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    practice_items: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    exposure_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        CheckConstraint("kind IN ('rating', 'pairwise')", name="ck_study_kind"),
        CheckConstraint("status IN ('open', 'closed')", name="ck_study_status"),
        CheckConstraint("answers_per_item >= 1", name="ck_study_k"),
    )


def detached_study(row) -> Study:
    """A ``Study`` of no ORM session from the study columns of a Core row (found by name, so
    the row may carry other columns too): a rater's request reads its study without a session,
    which costs less."""
    return Study(**{column.key: getattr(row, column.key) for column in Study.__table__.columns})


def no_study_named(session: Session, name: str) -> StudyNotFoundError:
    """The error for a study name the database lacks; it lists the names it has."""
    names = session.scalars(select(Study.name).order_by(Study.name)).all()
    return StudyNotFoundError(f"no study named {name!r} (studies: {', '.join(names) or 'none'})")


class Source(Base):
    """One model's sample set (or a folder of preprocessed real images) used by a study."""

    __tablename__ = "source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(
        String(100)
    )  # the model name shown in exports, never to raters
    is_real: Mapped[bool] = mapped_column(Boolean, default=False)
    dataset: Mapped[str | None] = mapped_column(
        String(100), nullable=True
    )  # real images: data set name
    path: Mapped[str] = mapped_column(Text)  # absolute path of the sample-set folder
    sample_set_id: Mapped[str] = mapped_column(String(200))
    manifest_sha256: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("study_id", "label", name="uq_source_label"),)


class Image(Base):
    __tablename__ = "image"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(40), unique=True)  # opaque URL id
    file: Mapped[str] = mapped_column(String(300))  # file name inside the sample set
    sha256: Mapped[str] = mapped_column(String(64))
    class_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(200))
    is_example: Mapped[bool] = mapped_column(
        Boolean, default=False
    )  # shown on the instructions page

    __table_args__ = (Index("ix_image_study", "study_id"),)


class Item(Base):
    """What k raters answer: one image (rating) or one pair a/b of the same class (pairwise)."""

    __tablename__ = "item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1.. within the study; `item` in the export
    class_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(200))
    image_a_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    image_b_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"), nullable=True)
    # "task" (counted, k slots), "catch" or "practice" (checks.py: one filled slot, never
    # claimed; every rater may get it; never counted in the tables)
    role: Mapped[str] = mapped_column(String(10), default="task", server_default="task")

    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_item_number"),)


# The lease expiry of a slot never leased: free is then one comparison, ``lease_expires_at <
# now``, which the claim index can test on its own entries (NULL would need an OR, tested on
# every leased row's table entry: ~500 rows read per claim mid-study).
NEVER_LEASED = dt.datetime(1970, 1, 1)


class Slot(Base):
    """One of the k answers an item needs: free (its lease expired, or ``NEVER_LEASED``), leased
    to one rater until a time, or filled (expiry NULL)."""

    __tablename__ = "slot"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    slot_no: Mapped[int] = mapped_column(
        Integer
    )  # claims take the lowest slot_no first: even filling
    shuffle: Mapped[int] = mapped_column(Integer)  # seeded random order among equal slot_no
    filled: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime, nullable=True, default=NEVER_LEASED
    )

    __table_args__ = (
        UniqueConstraint("item_id", "slot_no", name="uq_slot_item_no"),
        # a claim reads the free slots of a study in (slot_no, shuffle) order; the expiry in the
        # index lets it pass over the leased ones without reading their rows
        Index("ix_slot_claim", "study_id", "filled", "slot_no", "shuffle", "lease_expires_at"),
    )


def lease_is_free(now):
    """Whether no one holds a slot's lease at ``now`` (a value or a bind parameter): it ran out,
    or the slot was never leased (``NEVER_LEASED``). Filled slots keep NULL and are never free."""
    return Slot.lease_expires_at < now


class Rater(Base):
    __tablename__ = "rater"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    participant: Mapped[str] = mapped_column(String(100))  # id from the entry link
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    consented_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    answered: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # kept by submit()
    completion_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # Where the rater came from: "prolific" (STUDY_ID, SESSION_ID), "mturk" (hitId, assignmentId,
    # turkSubmitTo) or None (a plain link).
    platform: Mapped[str | None] = mapped_column(String(20), nullable=True)
    platform_study: Mapped[str | None] = mapped_column(String(100), nullable=True)
    platform_session: Mapped[str | None] = mapped_column(String(100), nullable=True)
    submit_to: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("study_id", "participant", name="uq_rater_participant"),)


class Assignment(Base):
    """One hand-out of an item to a rater (kept after its lease expires, so it is never repeated)."""

    __tablename__ = "assignment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(
        String(40), unique=True
    )  # opaque id the browser answers with
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("rater.id", ondelete="CASCADE"))
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id", ondelete="CASCADE"))
    lease_token: Mapped[str] = mapped_column(String(40))
    left: Mapped[str] = mapped_column(String(1))  # which of a/b is shown on the left
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("item_id", "rater_id", name="uq_assignment_item_rater"),
        Index("ix_assignment_rater", "rater_id"),
        CheckConstraint("\"left\" IN ('a', 'b')", name="ck_assignment_left"),
    )


class Answer(Base):
    __tablename__ = "answer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignment.id", ondelete="CASCADE"), unique=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("rater.id", ondelete="CASCADE"))
    left: Mapped[str] = mapped_column(String(1))
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    choice: Mapped[str | None] = mapped_column(String(10), nullable=True)
    unknown_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    response_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    exposure_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the study's, if any
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # catch/practice items only

    __table_args__ = (
        UniqueConstraint("item_id", "rater_id", name="uq_answer_item_rater"),
        Index("ix_answer_study_created", "study_id", "created_at"),
        CheckConstraint("rating IS NULL OR (rating BETWEEN 1 AND 5)", name="ck_answer_rating"),
        CheckConstraint(
            "choice IS NULL OR choice IN ('a', 'b', 'unknown')", name="ck_answer_choice"
        ),
        CheckConstraint("rating IS NOT NULL OR choice IS NOT NULL", name="ck_answer_given"),
        CheckConstraint("response_ms >= 0", name="ck_answer_ms"),
    )
