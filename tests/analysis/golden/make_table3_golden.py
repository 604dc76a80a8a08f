"""Writes table3_responses.csv.gz: a pairwise export whose Table 3 row must read 50.89 / 48.93 / 0.18.

Appendix G's MSP-vs-feed-forward study: 20 classes x 500 pairs (50 + 50 samples per class, each
used exactly 10 times) x 3 raters = 30,000 answers, 53 of them unusable (0.18%), MSP preferred in
50.89% and feed-forward in 48.93% of all answers, all 3 raters agreeing on 63.68% of pairs.

Counts: A = 0.5089 * 30000 = 15267, unknown = 53, B = 30000 - 15267 - 53 = 14680 (48.933% -> 48.93).
Pairs: x all-A + y all-B = 6368 (63.68% of 10000); 53 pairs (A, B, unknown); the other 3579 pairs are
m1 (A, A, B) + m2 (A, B, B). A - B = 3(x - y) + (m1 - m2) = 587 with x - y = 190, m1 - m2 = 17:
x = 3279, y = 3089, m1 = 1798, m2 = 1781. Check A: 3*3279 + 53 + 2*1798 + 1781 = 15267;
B: 3*3089 + 53 + 1798 + 2*1781 = 14680.

Run from the repository root: python tests/analysis/golden/make_table3_golden.py
"""

import csv
import gzip
from pathlib import Path

import numpy as np

COLUMNS = [
    "study",
    "kind",
    "rater",
    "item",
    "class_id",
    "class_name",
    "model_a",
    "sample_a",
    "model_b",
    "sample_b",
    "left",
    "rating",
    "choice",
    "unknown_reason",
    "response_ms",
    "created_at",
]
PATTERNS = (
    [("a", "a", "a")] * 3279
    + [("b", "b", "b")] * 3089
    + [("a", "b", "unknown")] * 53
    + [("a", "a", "b")] * 1798
    + [("a", "b", "b")] * 1781
)
CLASSES = [
    (649, "megalith"),
    (388, "giant panda"),
    (933, "cheeseburger"),
    (381, "Geoffroy's spider monkey"),
    (973, "coral reef"),
    (780, "schooner"),
    (259, "Pomeranian"),
    (127, "white stork"),
    (978, "seashore"),
    (327, "starfish"),
    (980, "volcano"),
    (453, "bookcase"),
    (948, "Granny Smith"),
    (323, "monarch butterfly"),
    (72, "yellow garden spider"),
    (407, "ambulance"),
    (567, "frying pan"),
    (147, "grey whale"),
    (292, "tiger"),
    (251, "Dalmatian"),
]


def main() -> None:
    rng = np.random.default_rng(2019)
    assert len(PATTERNS) == 10000
    patterns = [PATTERNS[i] for i in rng.permutation(len(PATTERNS))]
    rows = []
    for c, (class_id, name) in enumerate(CLASSES):
        offsets = rng.choice(50, size=10, replace=False)
        a = np.repeat(np.arange(50), 10)
        b = (a + np.tile(offsets, 50)) % 50  # each sample used exactly 10 times, no repeated pair
        for p in range(500):
            item = c * 500 + p
            raters = rng.choice(120, size=3, replace=False)
            for answer, rater in zip(rng.permutation(patterns[item]), raters):
                rows.append(
                    {
                        "study": "msp-vs-ff",
                        "kind": "pairwise",
                        "rater": f"r{rater:03d}",
                        "item": f"p{item:05d}",
                        "class_id": class_id,
                        "class_name": f"{name} ({class_id})",
                        "model_a": "MSP",
                        "sample_a": f"{c * 50 + a[p]:04d}.png",
                        "model_b": "Feed-forward",
                        "sample_b": f"{c * 50 + b[p]:04d}.png",
                        "left": "ab"[rng.integers(2)],
                        "rating": "",
                        "choice": answer,
                        "unknown_reason": "image did not load" if answer == "unknown" else "",
                        "response_ms": int(rng.integers(900, 8000)),
                        "created_at": "2019-03-01T12:00:00Z",
                    }
                )
    path = Path(__file__).with_name("table3_responses.csv.gz")
    with (
        gzip.GzipFile(path, "wb", mtime=0) as raw,
        __import__("io").TextIOWrapper(raw, encoding="utf-8", newline="") as handle,
    ):
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
