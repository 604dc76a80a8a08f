"""hvqeval: evaluation and human-study harness for hierarchical autoregressive image models.

Part 2 of the project (see DESIGN): the evaluation suite and the single ``hvqeval`` CLI that
drives the whole pipeline (training and sampling in ``models``, studies in ``study_app``,
reports in ``analysis``).
"""

__version__ = "0.1.0"
