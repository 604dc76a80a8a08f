"""Pairing design for pairwise preference studies (paper Appendix G).

Per class, P pairs (a, b) are drawn between n_A samples of model A and n_B samples of
model B so that every A sample is used exactly u_A times, every B sample exactly u_B
times, and no pair repeats. The paper uses n_A = n_B = 50, u = 10, P = 500.

Such a design exists iff n_A·u_A = n_B·u_B = P and P <= n_A·n_B (equivalently u_A <= n_B):
it is a simple bipartite graph with degrees u_A on one side and u_B on the other.

Construction (seeded, exact):
1. A circulant start: pair p = 0..P-1 joins a = p // u_A with b = p mod n_B. The u_A pairs
   of one a use consecutive b's modulo n_B, all distinct since u_A <= n_B; every b is hit
   exactly P / n_B = u_B times.
2. Randomisation by degree-preserving edge swaps: pick two pairs (a1, b1), (a2, b2) and
   replace them by (a1, b2), (a2, b1) when neither exists yet. Every swap keeps all
   degrees and simplicity, and the swap chain mixes over all such designs.
3. Shuffle the order of the pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from study_app.errors import PairingError

# Swap attempts per pair; far beyond the mixing needs of designs of the paper's size.
SWAPS_PER_PAIR = 20


@dataclass(frozen=True)
class PairingDesign:
    n_a: int
    n_b: int
    uses_a: int
    uses_b: int
    seed: int
    pairs: tuple[tuple[int, int], ...]  # (index into A samples, index into B samples)

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)


def check_feasible(n_a: int, n_b: int, uses_a: int, uses_b: int) -> int:
    """Return P = n_A·u_A, or raise PairingError saying why no design exists."""
    for name, value in (("n_a", n_a), ("n_b", n_b), ("uses_a", uses_a), ("uses_b", uses_b)):
        if not isinstance(value, int) or value < 1:
            raise PairingError(f"{name} must be a positive integer, got {value!r}")
    pairs = n_a * uses_a
    if pairs != n_b * uses_b:
        raise PairingError(
            f"infeasible pairing: {n_a} A samples used {uses_a} times give {pairs} pairs, but {n_b} B "
            f"samples used {uses_b} times give {n_b * uses_b}; choose sizes with n_a*uses_a == n_b*uses_b"
        )
    if pairs > n_a * n_b:
        raise PairingError(
            f"infeasible pairing: {pairs} distinct pairs asked for, but only {n_a}*{n_b} = {n_a * n_b} "
            f"different pairs exist; use each sample at most {n_b} (A) / {n_a} (B) times"
        )
    return pairs


def uses_for_pairs(n_a: int, n_b: int, pairs: int) -> tuple[int, int]:
    """(u_A, u_B) that give ``pairs`` pairs, or PairingError when the sizes do not divide it."""
    if pairs < 1:
        raise PairingError(f"the number of pairs must be positive, got {pairs}")
    if pairs % n_a or pairs % n_b:
        raise PairingError(
            f"infeasible pairing: {pairs} pairs cannot use each of {n_a} A samples and each of {n_b} "
            f"B samples equally often; choose a multiple of {_lcm(n_a, n_b)} pairs"
        )
    return pairs // n_a, pairs // n_b


def design_pairs(
    n_a: int, n_b: int, uses_a: int, uses_b: int | None = None, seed: int = 0
) -> PairingDesign:
    """A random design with exact uses and no repeated pair (see module docstring)."""
    uses_b = uses_a if uses_b is None else uses_b
    num_pairs = check_feasible(n_a, n_b, uses_a, uses_b)
    return PairingDesign(n_a, n_b, uses_a, uses_b, seed, _random_design(n_a, n_b, num_pairs, seed))


def check_uses(n_a: int, n_b: int, uses: int, names: tuple[str, str] = ("A", "B")) -> int:
    """P = uses * max(n_A, n_B) pairs, or PairingError when no design without repeats exists."""
    for name, value in (("sample count", n_a), ("sample count", n_b), ("uses", uses)):
        if not isinstance(value, int) or value < 1:
            raise PairingError(f"{name} must be a positive integer, got {value!r}")
    if uses > min(n_a, n_b):
        small = names[0] if n_a <= n_b else names[1]
        raise PairingError(
            f"infeasible pairing {names[0]} vs {names[1]}: each sample used {uses} times needs {uses} different "
            f"partners, but {small} has only {min(n_a, n_b)} samples per class; lower --uses to at most "
            f"{min(n_a, n_b)} or use more samples"
        )
    return uses * max(n_a, n_b)


def design_uneven(
    n_a: int, n_b: int, uses: int, seed: int = 0, names: tuple[str, str] = ("A", "B")
) -> PairingDesign:
    """Pairs between sets of unequal size: every sample of the larger set used exactly ``uses``
    times, those of the smaller set floor or ceil of P / n_small times (as even as the counts
    allow), no repeated pair. Equal sizes give ``design_pairs(n, n, uses, uses, seed)``."""
    num_pairs = check_uses(n_a, n_b, uses, names)
    return PairingDesign(
        n_a,
        n_b,
        num_pairs // n_a,
        num_pairs // n_b,
        seed,
        _random_design(n_a, n_b, num_pairs, seed),
    )


def _random_design(n_a: int, n_b: int, num_pairs: int, seed: int) -> tuple[tuple[int, int], ...]:
    """Steps 1-3 of the module docstring for degrees as even as P allows on both sides.

    Start: a's stubs consecutively (the first P mod n_A samples of A get one more use), pair
    p joins the a of stub p with b = p mod n_B: an a's pairs use consecutive b's, distinct
    since its degree <= ceil(P / n_A) <= n_B; every b gets floor or ceil of P / n_B pairs.
    """
    rng = random.Random(seed)
    base, extra = divmod(num_pairs, n_a)
    stubs = [a for a in range(n_a) for _ in range(base + (a < extra))]
    pairs = [(a, p % n_b) for p, a in enumerate(stubs)]
    present = set(pairs)
    if len(present) < n_a * n_b:  # a complete design has nothing to swap into
        for _ in range(SWAPS_PER_PAIR * num_pairs):
            i, j = rng.randrange(num_pairs), rng.randrange(num_pairs)
            (a1, b1), (a2, b2) = pairs[i], pairs[j]
            if a1 == a2 or b1 == b2 or (a1, b2) in present or (a2, b1) in present:
                continue
            present.difference_update((pairs[i], pairs[j]))
            pairs[i], pairs[j] = (a1, b2), (a2, b1)
            present.update((pairs[i], pairs[j]))
    rng.shuffle(pairs)
    return tuple(pairs)


def _lcm(x: int, y: int) -> int:
    from math import gcd

    return x * y // gcd(x, y)
