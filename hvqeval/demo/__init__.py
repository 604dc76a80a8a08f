"""The whole pipeline in one command (``hvqeval demo``): train, sample, evaluate, study.

On a 2-core CPU with no network the demo trains two small two-level hierarchies (a
feed-forward and an MSP auxiliary decoder, paper Sections 4.1 and 4.2) on the built-in
``shapes`` data, samples every class from both (Algorithm 4), draws sampled
reconstructions of held-out images, computes IS/FID with the domain classifier (and the
real images' own, as reference), the joint NLL bound (Appendix F) and pixel-space nearest
neighbours (Appendix H), creates a rating study and two pairwise studies (Section 7.3) and
writes ``report.html``.

Each step is one or more ``hvqeval`` commands run in this process, so the demo is exactly
what a user would type; the report lists them. ``steps.json`` records finished steps, so a
rerun reuses them and continues the one Ctrl-C stopped.

Modules: ``plan`` (sizes and the time budget; no torch), ``steps`` (the ``Demo`` that runs
the commands), ``quality`` (reference values and warnings), ``report`` (the HTML). The
dependencies point one way: steps -> report -> quality -> plan.
"""

from hvqeval.demo.plan import DemoError, DemoPlan
from hvqeval.demo.steps import Demo, run_demo

__all__ = ["Demo", "DemoError", "DemoPlan", "run_demo"]
