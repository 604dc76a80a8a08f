"""The whole pipeline in one command (``hvqeval demo``): train, sample, evaluate, study.

On a 2-core CPU with no network the demo trains two small two-level hierarchies (a
feed-forward and an MSP auxiliary decoder, paper Sections 4.1 and 4.2) and the single-level
PixelCNN baseline (Appendix D) on the built-in ``shapes`` data, samples every class from each
(Algorithm 4), draws sampled reconstructions of held-out images, computes IS/FID with the
domain classifier (and the real images' own, as reference), the NLL (Appendix F bound; exact
for the baseline), pixel-space nearest neighbours (Appendix H) and a temperature sweep,
creates a rating study and two pairwise studies (Section 7.3), plots the temperature and
training curves and writes ``report.html``.

Each step is one or more ``hvqeval`` commands run in this process, so the demo is exactly
what a user would type; the report lists them. ``steps.json`` records finished steps, so a
rerun reuses them and continues the one Ctrl-C stopped.

Modules: ``plan`` (sizes and the time budget; no torch), ``threads`` (torch threads for the
cores other processes leave free), ``steps`` (the ``Demo`` that runs the commands), ``cuts``
(what the budget cuts), ``studies`` (the studies' arguments and the serve line), ``quality``
(reference values and warnings), ``report`` (the HTML). The dependencies point one way:
steps -> cuts, report -> quality -> studies -> threads, plan.
"""

from hvqeval.demo.plan import DemoError, DemoPlan
from hvqeval.demo.steps import Demo, run_demo

__all__ = ["Demo", "DemoError", "DemoPlan", "run_demo"]
