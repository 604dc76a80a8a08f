"""Extras the time budget leaves out whole (hvqeval.demo.plan.OPTIONAL), with a clock the test sets."""

from __future__ import annotations

import json

from hvqeval.demo import Demo
from hvqeval.demo.plan import OPTIONAL


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_extra_that_does_not_fit_is_left_out_whole_and_reported(tmp_path):
    clock, lines = Clock(), []
    demo = Demo(tmp_path / "demo", 3, "shapes", None, echo=lines.append, clock=clock)
    assert demo.skip_reason("sweep_msp") is None  # a fresh 3-minute run has time for it
    assert demo.skip_reason("sample_ff") is None  # not optional
    clock.now += 170.0  # 10 s of 180 left: not enough beside the steps every report needs
    reason = demo.skip_reason("sweep_msp")
    assert reason.startswith("no time left for the temperature sweep") and "10 s left" in reason
    assert demo.skip_reason("report") is None

    # Recorded as left out (not as done with results), and the rest of its group follows it.
    demo.step("sweep_msp", lambda: (_ for _ in ()).throw(AssertionError("a left-out step ran")))
    steps = json.loads((tmp_path / "demo" / "steps.json").read_text())
    assert steps["sweep_msp"]["skipped"] == reason and "commands" not in steps["sweep_msp"]
    assert demo.skip_reason("plot_temperature") == "as the temperature sweep is"
    assert any("sweep_msp: left out" in line for line in lines)
    assert demo.cuts() == [f"the temperature sweep was left out ({reason})"]
    # The baseline is judged on its own first step.
    first = OPTIONAL["the PixelCNN baseline"][0]
    assert demo.skip_reason(first).startswith("no time left for the PixelCNN baseline")
    assert demo.skip_reason("sample_pixelcnn") is None  # not decided until its first step is


def test_all_steps_runs_the_extras_whatever_the_time(tmp_path):
    clock = Clock()
    demo = Demo(
        tmp_path / "demo", 3, "shapes", None, echo=lambda line: None, clock=clock, all_steps=True
    )
    clock.now += 1000.0  # far over budget
    assert all(demo.skip_reason(name) is None for members in OPTIONAL.values() for name in members)
