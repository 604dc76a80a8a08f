"""What a new study shows, drawn with its seed (paper Appendix G), before anything is stored.

Step by step, as ``create._build`` calls them:

1. ``choose_classes``: the classes asked for, or some drawn among those every generated sample
   set has enough images of;
2. ``draw_images``: per source and class, the images the study asks about, and up to
   ``EXAMPLES_PER_SOURCE`` images no task shows, for the instructions' examples;
3. ``draw_check_originals``: images no counted task shows (real ones when the study has
   some), from which the attention checks are made (``catch_items.py``);
4. ``question_of``: the question raters are asked.

Every image drawn is checked (its sha256, and that it decodes) as it is drawn.
"""

from __future__ import annotations

import random
from collections import defaultdict

from study_app import catch_items
from study_app.errors import StudyError, StudySourceError
from study_app.sample_sets import SampleSetFiles, check_images, read_sample_set
from study_app.study_cards import SourceSpec, StudySettings

QUESTION_RATING = "How realistic does this image look?"
QUESTION_PAIRWISE = "Which image looks the most realistic?"
QUESTION_PAIRWISE_REAL = "Which image is real?"
EXAMPLES_PER_SOURCE = 2

# (file, sha256, class name) of one image of a sample set
FileEntry = tuple[str, str, str]


def load_source(spec: SourceSpec) -> SampleSetFiles:
    if spec.real_dataset is not None:
        raise StudySourceError(
            f"source {spec.label}: real images of {spec.real_dataset} must be written as a "
            "sample set first (hvqeval study create does this)"
        )
    loaded = read_sample_set(spec.label, spec.location)
    if spec.dataset is not None:  # real images the CLI wrote for this study
        loaded.dataset = spec.dataset
    return loaded


def check_distinct_sources(loaded: list[SampleSetFiles]) -> None:
    """Every source is a sample set of its own: one set under two labels would compare images
    with themselves (pairwise) or count one model twice (rating)."""
    seen: dict[tuple, str] = {}
    for src in loaded:
        for key in (("path", src.path.resolve()), ("manifest", src.manifest_sha256)):
            if key in seen:
                raise StudySourceError(
                    f"sources {seen[key]} and {src.label} are the same sample set ({src.path}); "
                    "give each source a set of its own (for an A/A check, sample the model "
                    "twice with different seeds)"
                )
            seen[key] = src.label


def generated_sources(settings: StudySettings) -> list[SampleSetFiles]:
    return [load_source(s) for s in settings.sources if not s.is_real]


def choose_classes(
    settings: StudySettings, generated: list[SampleSetFiles] | None = None
) -> list[int]:
    """The classes of the study: those asked for, or ``classes`` of them drawn with the seed
    among those every generated sample set has ``per_class`` images of. ``generated``: those
    sets, when already loaded (else they are read here)."""
    if generated is None:
        generated = generated_sources(settings)
    if not generated:
        raise StudyError("a study needs at least one generated sample set besides real images")
    need = settings.per_class
    eligible = None
    for src in generated:
        ok = {c for c, files in src.by_class.items() if len(files) >= settings.count_of(src.label)}
        eligible = ok if eligible is None else eligible & ok
    eligible = sorted(eligible or ())
    requested = settings.classes
    if isinstance(requested, int):
        if requested < 1:
            raise StudyError(f"--classes must be at least 1, got {requested}")
        if len(eligible) < requested:
            raise StudySourceError(
                f"only {len(eligible)} class(es) have {need} images in every sample set; "
                f"ask for fewer classes or fewer images per class"
            )
        return sorted(random.Random(settings.seed).sample(eligible, requested))
    for c in requested:
        if c not in eligible:
            counts = {
                s.label: f"{len(s.by_class.get(c, []))}/{settings.count_of(s.label)}"
                for s in generated
            }
            raise StudySourceError(
                f"class {c} does not have {need} images in every sample set ({counts})"
            )
    return sorted(set(requested))


def examples_source(settings: StudySettings, loaded: list[SampleSetFiles]) -> list[SampleSetFiles]:
    """The sample set of real example images the CLI wrote, when no source of the study is real
    (``[]`` or ``[it]``); every one of its images is an example."""
    if not settings.examples_real_set or any(s.dataset for s in loaded):
        return []
    examples_set = read_sample_set("examples-real", settings.examples_real_set)
    examples_set.dataset = settings.examples_real
    check_images(
        examples_set, [f for files in examples_set.by_class.values() for f, _h, _n in files]
    )
    return [examples_set]


def draw_images(
    settings: StudySettings,
    loaded: list[SampleSetFiles],
    classes: list[int],
    rng: random.Random,
) -> tuple[dict[tuple[int, int], list[FileEntry]], dict[int, list[FileEntry]]]:
    """(chosen, examples): ``chosen[(source index, class)]``, the images the study asks about;
    ``examples[source index]``, images of that source no task shows."""
    for src in loaded:
        need = settings.count_of(src.label)
        short = [c for c in classes if len(src.by_class.get(c, [])) < need]
        if short:
            raise StudySourceError(
                f"source {src.label}: too few images of class(es) {short} (need {need} each)"
            )
    chosen: dict[tuple[int, int], list[FileEntry]] = {}
    examples: dict[int, list[FileEntry]] = defaultdict(list)
    for s_index, src in enumerate(loaded):
        for c in classes:
            files = sorted(src.by_class.get(c, []))
            picked = rng.sample(files, settings.count_of(src.label))
            chosen[(s_index, c)] = picked
            unused = [f for f in files if f not in set(picked)]
            if len(examples[s_index]) < EXAMPLES_PER_SOURCE and unused:
                examples[s_index].append(unused[0])
            check_images(src, [f for f, _h, _n in picked + examples[s_index]])
    if not settings.no_examples:
        # The instructions show examples of every source; one that has no image beyond those the
        # study asks about would leave them out silently.
        bare = [src.label for i, src in enumerate(loaded) if not examples[i]]
        if bare:
            raise StudySourceError(
                f"source(s) {', '.join(bare)} have no image left for the instructions' examples (every image "
                f"of the study's classes is a task); add images, lower --per-class / --count, or pass "
                f"--no-examples"
            )
    return chosen, examples


def draw_check_originals(
    settings: StudySettings,
    loaded: list[SampleSetFiles],
    classes: list[int],
    chosen: dict[tuple[int, int], list[FileEntry]],
) -> list[tuple]:
    """(source index, file, sha256, class name, class) of the images the attention checks are
    made from: none of them in a counted task, real ones when the study has some."""
    real = [i for i, src in enumerate(loaded) if src.dataset] or list(range(len(loaded)))
    check_files = catch_items.pick_originals(
        [
            (i, f, h, cname, c)
            for i in real
            for c in classes
            for f, h, cname in sorted(loaded[i].by_class.get(c, []))
            if (f, h, cname) not in set(chosen[(i, c)])
        ],
        catch_items.catch_count(settings.catch_fraction, settings.tasks_per_rater)
        + settings.practice,
        settings.seed,
        [loaded[i].label for i in real],
    )
    for i in real:
        check_images(loaded[i], sorted({f for s_i, f, *_ in check_files if s_i == i}))
    return check_files


def question_of(
    settings: StudySettings, loaded: list[SampleSetFiles], compared: list[tuple[int, int]]
) -> str:
    """ "Which image is real?" only when every pair compared holds real images against
    generated ones."""
    if settings.kind == "rating":
        return QUESTION_RATING
    real_in_every_pair = bool(compared) and all(
        bool(loaded[x].dataset) != bool(loaded[y].dataset) for x, y in compared
    )
    return QUESTION_PAIRWISE_REAL if real_in_every_pair else QUESTION_PAIRWISE


def class_of(src: SampleSetFiles, file: str) -> int:
    for c, files in src.by_class.items():
        if any(f == file for f, _h, _n in files):
            return c
    raise KeyError(file)
