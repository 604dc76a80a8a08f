"""Real images a study draws from a dataset (``--real``, ``--examples-real``, real catch
images): written as the study's own sample sets, then the study is created from them."""

from __future__ import annotations

import shutil
from pathlib import Path


def write_real_images(
    dataset_name: str,
    split: str,
    label: str,
    classes: list[int],
    count: int,
    size: int,
    seed: int,
    out: Path,
) -> Path:
    """``count`` real images per class as a sample set at ``out`` (``hvqeval samples
    from-dataset``: preprocessed as in training, the manifest naming the dataset)."""
    from hvqeval.image_import import ImageImportError, write_dataset_images
    from hvqeval.sample_set import MANIFEST_NAME
    from study_app.errors import StudySourceError

    if (Path(dataset_name) / MANIFEST_NAME).is_file():
        raise StudySourceError(
            f"--real {label}={dataset_name}: --real takes a dataset to draw real images from "
            f"(e.g. {label}=imagenet:/data/imagenet or {label}=shapes), but {dataset_name} is a "
            f"sample set; give it as --source {label}={dataset_name} (a `samples from-dataset` set "
            "counts as real images)"
        )
    try:
        write_dataset_images(
            dataset_name,
            split,
            out,
            per_class=count,
            classes=classes,
            image_size=size,
            seed=seed,
            model=label,
        )
    except ImageImportError as err:
        raise StudySourceError(f"real images {label}: {err}") from None
    return out


def create_with_real_images(url: str, settings, instance_dir: str):
    """Write the real images the study needs as sample sets, then create the study. They go
    into the study's own folder in the instance folder, made by this create (an existing one,
    another study's images, is never written over) and removed again if the create fails."""
    from dataclasses import replace

    from study_app.create import SourceSpec, claim_folder, create_study, study_folder
    from study_app.draw import EXAMPLES_PER_SOURCE, choose_classes, generated_sources

    if not any(s.real_dataset for s in settings.sources) and not settings.examples_real:
        return create_study(url, settings, instance_dir)

    from study_app.catch_items import catch_count, check_settings

    check_settings(  # one line for a bad setting before any image is written
        settings.catch_fraction,
        settings.practice,
        settings.exposure_ms,
        settings.tasks_per_rater,
    )
    classes = choose_classes(settings)
    # beyond the tasks and examples, one image per check item that no counted task shows
    checks = catch_count(settings.catch_fraction, settings.tasks_per_rater) + settings.practice
    for_checks = -(-checks // len(classes)) if checks > 0 else 0
    size = generated_sources(settings)[0].image_size
    study_dir = claim_folder(study_folder(instance_dir, settings.name), settings.name)
    try:
        sources = []
        for spec in settings.sources:
            if spec.real_dataset:
                out = write_real_images(
                    spec.real_dataset,
                    settings.real_split,
                    spec.label,
                    classes,
                    settings.count_of(spec.label) + EXAMPLES_PER_SOURCE + for_checks,
                    size,
                    settings.seed,
                    study_dir / f"real-{spec.label}",
                )
                spec = SourceSpec(spec.label, str(out), dataset=spec.real_dataset)
            sources.append(spec)
        examples_set = None
        if settings.examples_real and not any(s.dataset for s in sources):
            examples_set = str(
                write_real_images(
                    settings.examples_real,
                    settings.real_split,
                    "examples-real",
                    classes[:1],
                    EXAMPLES_PER_SOURCE,
                    size,
                    settings.seed,
                    study_dir / "examples-real",
                )
            )
        settings = replace(
            settings, sources=tuple(sources), classes=tuple(classes), examples_real_set=examples_set
        )
        return create_study(url, settings, instance_dir)
    except BaseException:
        shutil.rmtree(study_dir, ignore_errors=True)  # nothing half-written left
        raise
