"""Pairing design (Appendix G: 500 pairs per class from 50 + 50 samples, each used 10 times)."""

import re
from collections import Counter

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hvqeval.cli import cli
from study_app.errors import PairingError
from study_app.pairing import check_feasible, design_pairs, design_uneven, uses_for_pairs


@st.composite
def feasible_sizes(draw):
    # Draw n_a, u_a, then n_b dividing P = n_a*u_a with u_a <= n_b (the feasibility condition).
    n_a = draw(st.integers(1, 30))
    u_a = draw(st.integers(1, 12))
    pairs = n_a * u_a
    n_b = draw(
        st.sampled_from(
            [d for d in range(1, pairs + 1) if pairs % d == 0 and u_a <= d <= 40] or [pairs]
        )
    )
    return n_a, n_b, u_a, pairs // n_b


@settings(max_examples=150, deadline=None)
@given(feasible_sizes(), st.integers(0, 2**31 - 1))
def test_every_sample_used_exactly_u_times_and_no_pair_repeats(sizes, seed):
    n_a, n_b, u_a, u_b = sizes
    design = design_pairs(n_a, n_b, u_a, u_b, seed)
    assert design.num_pairs == n_a * u_a == n_b * u_b
    assert len(set(design.pairs)) == design.num_pairs
    assert Counter(a for a, _ in design.pairs) == {a: u_a for a in range(n_a)}
    assert Counter(b for _, b in design.pairs) == {b: u_b for b in range(n_b)}


def test_paper_design_is_seeded_and_random():
    first = design_pairs(50, 50, 10, seed=0)
    assert first == design_pairs(50, 50, 10, seed=0)
    other = design_pairs(50, 50, 10, seed=1)
    assert set(first.pairs) != set(other.pairs)
    # The edge swaps move far from the circulant start, where every a's partners are a run of
    # 10 consecutive b's (mod 50): after mixing hardly any sample keeps such a run.
    runs = 0
    for a in range(50):
        bs = sorted(b for x, b in first.pairs if x == a)
        runs += any(all((start + i) % 50 in bs for i in range(10)) for start in range(50))
    assert runs < 5


@pytest.mark.parametrize(
    "n_a, n_b, u_a, u_b, words",
    [
        (50, 50, 10, 9, "500 pairs"),  # 50*10 != 50*9
        (3, 3, 4, 4, "only 3*3 = 9"),  # 12 distinct pairs from a 3x3 grid is impossible
        (0, 5, 1, 1, "n_a must be a positive"),
    ],
)
def test_infeasible_designs_are_refused_with_the_reason(n_a, n_b, u_a, u_b, words):
    with pytest.raises(PairingError, match=re.escape(words)):
        design_pairs(n_a, n_b, u_a, u_b)


def test_complete_design_is_all_pairs():
    design = design_pairs(4, 3, 3, 4, seed=5)  # u_a == n_b: every pair exactly once
    assert sorted(design.pairs) == [(a, b) for a in range(4) for b in range(3)]


def test_uses_for_pairs():
    assert uses_for_pairs(50, 50, 500) == (10, 10)
    with pytest.raises(PairingError, match="multiple of 50"):
        uses_for_pairs(50, 50, 499)
    assert check_feasible(50, 50, 10, 10) == 500


def test_cli_prints_and_writes_the_design(tmp_path):
    out = tmp_path / "pairs.csv"
    result = CliRunner().invoke(
        cli,
        [
            "study",
            "pairings",
            "--n-a",
            "50",
            "--n-b",
            "50",
            "--uses",
            "10",
            "--seed",
            "0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "pair,a,b" and len(lines) == 501
    rows = [tuple(map(int, line.split(","))) for line in lines[1:]]
    assert [r[0] for r in rows] == list(range(500))
    assert {(a, b) for _, a, b in rows} == set(design_pairs(50, 50, 10, seed=0).pairs)
    assert "pair,a,b" in result.stdout


def test_cli_refuses_infeasible_parameters_in_one_line():
    result = CliRunner().invoke(
        cli, ["study", "pairings", "--n-a", "50", "--n-b", "40", "--uses", "10"]
    )
    assert result.exit_code == 1
    assert (
        result.output.startswith("Error: infeasible pairing") and "Traceback" not in result.output
    )


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 25), st.integers(1, 25), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_unequal_counts_use_every_sample_as_evenly_as_the_counts_allow(n_a, n_b, uses, seed):
    if uses > min(n_a, n_b):
        with pytest.raises(PairingError, match="infeasible pairing"):
            design_uneven(n_a, n_b, uses, seed)
        return
    design = design_uneven(n_a, n_b, uses, seed)
    assert design.num_pairs == uses * max(n_a, n_b) and len(set(design.pairs)) == design.num_pairs
    for side, n in ((0, n_a), (1, n_b)):
        used = Counter(p[side] for p in design.pairs)
        assert set(used) == set(range(n))
        assert min(used.values()) >= uses and max(used.values()) - min(used.values()) <= 1
        if n == max(n_a, n_b):
            assert set(used.values()) == {uses}  # the larger source: exactly u uses per sample


def test_equal_counts_keep_the_exact_design():
    assert design_uneven(50, 50, 10, seed=4).pairs == design_pairs(50, 50, 10, 10, seed=4).pairs
