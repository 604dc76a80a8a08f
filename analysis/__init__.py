"""Analysis of metric results and human-study responses: the paper's Tables 1, 2, 3 and 5."""
