"""The cards of a new study: its sources, its settings, and the summary of what was created.

Strict frozen dataclasses: ``create.create_study`` checks them; ``draw.py`` and
``study_rows.py`` read them. The settings are stored with the study as JSON (``settings_json``).
"""

from __future__ import annotations

from dataclasses import dataclass

from study_app.errors import StudyError

REAL_PREFIX = "real:"


@dataclass(frozen=True)
class SourceSpec:
    """``LABEL=PATH`` for a sample set, ``LABEL=real:DATASET`` for real images still to be
    written (by the CLI, which then passes the written set's path and ``dataset``)."""

    label: str
    location: str
    dataset: str | None = None  # set: the sample set at ``location`` holds real images of it

    @property
    def is_real(self) -> bool:
        return self.dataset is not None or self.location.startswith(REAL_PREFIX)

    @property
    def real_dataset(self) -> str | None:
        """The data set of real images still to be written (``real:DATASET``), else None."""
        return self.location[len(REAL_PREFIX) :] if self.location.startswith(REAL_PREFIX) else None

    @classmethod
    def parse(cls, text: str, force_real: bool = False) -> SourceSpec:
        label, sep, location = text.partition("=")
        if not sep or not label.strip() or not location.strip():
            raise StudyError(f"expected LABEL=SAMPLE_SET (or LABEL=real:DATASET), got {text!r}")
        location = location.strip()
        if force_real and not location.startswith(REAL_PREFIX):
            location = REAL_PREFIX + location
        return cls(label.strip(), location)


@dataclass(frozen=True)
class StudySettings:
    name: str
    kind: str
    sources: tuple[SourceSpec, ...]  # rating: any number; pairwise: two or more
    classes: int | tuple[int, ...]
    per_class: int
    answers_per_item: int = 3
    tasks_per_rater: int = 50
    lease_seconds: int = 600
    seed: int = 0
    pairs_per_class: int | None = None
    real_split: str = "val"
    examples_real: str | None = None  # dataset for example real images when no source is real
    examples_real_set: str | None = None  # the sample set the CLI wrote for those examples
    pairs: tuple[tuple[str, str], ...] = ()  # pairwise: source pairs (labels) compared; () = all
    uses: int | None = (
        None  # pairwise: uses of each sample per source pair (None: 10, or pairs_per_class)
    )
    counts: tuple[tuple[str, int], ...] = ()  # images per class of a source, other than per_class
    completion_code: str | None = (
        None  # one code for every rater (Prolific); None: random per rater
    )
    completion_url: str | None = None  # where finished raters are redirected (Prolific)
    no_examples: bool = False  # said explicitly: instructions without example images
    catch_fraction: float = 0.0  # attention checks: share of catch items in each rater's answers
    practice: int = 0  # practice items shown first (catch_items.py)
    exposure_ms: int | None = None  # HYPE-style exposure: images hidden after this many ms

    def count_of(self, label: str) -> int:
        return dict(self.counts).get(label, self.per_class)


@dataclass(frozen=True)
class StudySummary:
    name: str
    kind: str
    public_id: str
    items: int
    answers_needed: int
    classes: tuple[int, ...]
    catch_items: int = 0  # per rater
    practice_items: int = 0
    check_images: int = 0  # distinct images (none in a counted task) the check items are made from
    exposure_ms: int | None = None
