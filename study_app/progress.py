"""Progress of a study for the admin pages and ``hvqeval study list`` (Flask-free)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, distinct, func, select
from sqlalchemy.orm import aliased

from study_app.assign import utcnow
from study_app.db import session_scope
from study_app.schema import Answer, Assignment, Image, Item, Rater, Slot, Source, Study


@dataclass(frozen=True)
class GroupProgress:
    class_id: int
    class_name: str
    model: str  # source label (rating) or "A vs B" (pairwise)
    done: int
    needed: int


@dataclass(frozen=True)
class StudyProgress:
    name: str
    kind: str
    status: str
    public_id: str
    items: int
    answers_per_item: int
    done: int
    needed: int
    unknown: int
    raters: int  # gave consent (the raters who may answer)
    finished_raters: int
    active_raters: int  # handed a task within the last lease period
    answers_last_hour: int
    groups: tuple[GroupProgress, ...]
    catch_items: int = 0  # per rater (attention checks)
    practice_items: int = 0
    exposure_ms: int | None = None
    visitors: int = 0  # opened the link without giving consent (yet): not raters

    @property
    def raters_text(self) -> str:
        """The raters in a few words (and who opened the link without consenting)."""
        more = f", {self.visitors} more opened the link without consenting" if self.visitors else ""
        return f"{self.raters} rater{'' if self.raters == 1 else 's'}{more}"

    @property
    def checks_text(self) -> str:
        """The attention-check and exposure settings in a few words."""
        exposure = f"exposure {self.exposure_ms} ms" if self.exposure_ms else "no exposure limit"
        return f"{self.catch_items} catch, {self.practice_items} practice per rater, {exposure}"


def study_links(engine: Engine) -> list[tuple[str, str, str]]:
    """(name, status, public id) of every study, in the order they were created: the raters'
    link of a study is ``/s/<public id>/``."""
    with session_scope(engine, read_only=True) as s:
        rows = s.execute(
            select(Study.name, Study.status, Study.public_id).order_by(Study.created_at, Study.id)
        )
        return [tuple(row) for row in rows]


def study_names(engine: Engine) -> list[str]:
    """The studies' names, in the order they were created."""
    return [name for name, _status, _public_id in study_links(engine)]


def study_progress(engine: Engine, name: str) -> StudyProgress | None:
    now = utcnow()
    src_a, src_b, img_a, img_b = aliased(Source), aliased(Source), aliased(Image), aliased(Image)
    with session_scope(engine, read_only=True) as s:
        study = s.scalar(select(Study).where(Study.name == name))
        if study is None:
            return None
        k = study.answers_per_item
        groups_q = (
            select(
                Item.class_id,
                Item.class_name,
                src_a.label,
                src_b.label,
                func.count(Slot.id),
                func.sum(func.cast(Slot.filled, type_=Slot.slot_no.type)),
            )
            .join(Slot, Slot.item_id == Item.id)
            .join(img_a, img_a.id == Item.image_a_id)
            .join(src_a, src_a.id == img_a.source_id)
            .outerjoin(img_b, img_b.id == Item.image_b_id)
            .outerjoin(src_b, src_b.id == img_b.source_id)
            .where(Item.study_id == study.id, Item.role == "task")
            .group_by(Item.class_id, Item.class_name, src_a.label, src_b.label)
            .order_by(Item.class_id, src_a.label)
        )
        groups = tuple(
            GroupProgress(c, cname, a if b is None else f"{a} vs {b}", int(filled or 0), int(slots))
            for c, cname, a, b, slots, filled in s.execute(groups_q)
        )
        items = s.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.study_id == study.id, Item.role == "task")
        )
        answers = (  # counted answers (attention checks are not part of the study's progress)
            select(func.count())
            .select_from(Answer)
            .join(Item, Item.id == Answer.item_id)
            .where(Answer.study_id == study.id, Item.role == "task")
        )
        done = s.scalar(answers)
        unknown = s.scalar(answers.where(Answer.choice == "unknown"))
        last_hour = s.scalar(answers.where(Answer.created_at >= now - dt.timedelta(hours=1)))
        of_study = select(func.count()).select_from(Rater).where(Rater.study_id == study.id)
        raters = s.scalar(of_study.where(Rater.consented_at.is_not(None)))
        visitors = s.scalar(of_study.where(Rater.consented_at.is_(None)))
        finished = s.scalar(
            select(func.count())
            .select_from(Rater)
            .where(Rater.study_id == study.id, Rater.completion_code.is_not(None))
        )
        active = s.scalar(
            select(func.count(distinct(Assignment.rater_id))).where(
                Assignment.study_id == study.id,
                Assignment.issued_at >= now - dt.timedelta(seconds=study.lease_seconds),
            )
        )
        return StudyProgress(
            study.name,
            study.kind,
            study.status,
            study.public_id,
            items,
            k,
            done,
            items * k,
            unknown,
            raters,
            finished,
            active,
            last_hour,
            groups,
            study.catch_items,
            study.practice_items,
            study.exposure_ms,
            visitors,
        )


def set_status(engine: Engine, name: str, status: str) -> bool:
    if status not in ("open", "closed"):
        raise ValueError(status)
    with session_scope(engine) as s:
        study = s.scalar(select(Study).where(Study.name == name))
        if study is None:
            return False
        study.status = status
        return True
