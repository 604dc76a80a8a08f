"""Fixtures of the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_helpers import frame


@pytest.fixture
def write_csv(tmp_path):
    def write(rows, name="responses.csv") -> Path:
        path = tmp_path / name
        frame(rows).to_csv(path, index=False)
        return path

    return write
