"""Which sources a pairwise study compares, and the pairs of images of each (M >= 2 sources).

A pairwise study has M >= 2 sources (models and real images) and compares all M(M-1)/2 pairs
of them, or the pairs listed (``X:Y``, X shown as "A" in the export and the tables). Sources
may have different numbers of images per class (``counts``). Per class and source pair the
design is ``pairing.design_uneven``: every sample of the larger source used ``uses`` times,
those of the smaller as evenly as the counts allow, no repeated pair. The older form, two
sources with ``pairs_per_class``, keeps its exact design (``pairing.design_pairs``).
Which of A and B is shown on the left is drawn per rater from the study seed at hand-out
(``handout.side_of_a``).
"""

from __future__ import annotations

from itertools import combinations

from study_app.errors import StudyError
from study_app.pairing import PairingDesign, design_pairs, design_uneven, uses_for_pairs

DEFAULT_USES = 10  # the paper: 50 samples per class and model, each in 10 of 500 pairs


def source_pairs(
    labels: list[str], listed: tuple[tuple[str, str], ...] = ()
) -> list[tuple[int, int]]:
    """Indices (x, y) of the compared sources: all pairs in order, or those listed."""
    if len(labels) < 2:
        raise StudyError(
            "a pairwise study compares at least two sources (--source LABEL=SET, twice or more)"
        )
    if not listed:
        return list(combinations(range(len(labels)), 2))
    index = {label: i for i, label in enumerate(labels)}
    found, seen = [], set()
    for x, y in listed:
        for label in (x, y):
            if label not in index:
                raise StudyError(
                    f"--pair {x}:{y}: no source labelled {label!r} (sources: {', '.join(labels)})"
                )
        if x == y:
            raise StudyError(
                f"--pair {x}:{y} compares a source with itself; name two different sources"
            )
        if frozenset((x, y)) in seen:
            raise StudyError(f"--pair {x}:{y} is listed twice (in either order)")
        seen.add(frozenset((x, y)))
        found.append((index[x], index[y]))
    unused = [label for label in labels if not any(index[label] in p for p in found)]
    if unused:
        raise StudyError(
            f"source(s) {', '.join(unused)} are in no --pair; list a pair for each or drop them"
        )
    return found


def parse_pair(text: str) -> tuple[str, str]:
    """``"msp:ff"`` -> ("msp", "ff")."""
    x, sep, y = text.partition(":")
    if not sep or not x.strip() or not y.strip():
        raise StudyError(f"--pair: expected LABEL_A:LABEL_B, got {text!r}")
    return x.strip(), y.strip()


def pair_design(
    n_a: int,
    n_b: int,
    names: tuple[str, str],
    uses: int | None,
    pairs_per_class: int | None,
    seed: int,
) -> PairingDesign:
    """The design of one source pair in one class (PairingError when infeasible, naming the pair)."""
    if pairs_per_class is not None:
        if uses is not None:
            raise StudyError("give --uses or --pairs-per-class, not both")
        uses_a, uses_b = uses_for_pairs(n_a, n_b, pairs_per_class)
        return design_pairs(n_a, n_b, uses_a, uses_b, seed)
    return design_uneven(n_a, n_b, DEFAULT_USES if uses is None else uses, seed, names)


def design_seed(study_seed: int, class_id: int, pair_index: int) -> int:
    """Seed of the design of one class and source pair (pair 0: the two-source studies' seed)."""
    return study_seed * 1_000_003 + class_id + 7_919 * pair_index
