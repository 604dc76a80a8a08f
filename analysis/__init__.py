"""Analysis of metric results and human-study responses: the paper's Tables 1, 2, 3 and 5.

Paper Section 7.3 and Appendix G. DataFrame in, DataFrame out (documented columns); numbers
are rounded only in :mod:`analysis.report`.

- :mod:`analysis.responses`   read and validate study exports (CSV or study database)
- :mod:`analysis.results`     the metrics results store and Table 1
- :mod:`analysis.ratings`     Table 2 (realism ratings)
- :mod:`analysis.preferences` Tables 3 and 5 (pairwise preferences, tests, position bias)
- :mod:`analysis.clustered`   multiway cluster-robust SEs and the pigeonhole bootstrap
- :mod:`analysis.agreement`   Fleiss' kappa, Krippendorff's ordinal alpha, all-agree fraction
- :mod:`analysis.bradley_terry` strengths of several models across studies
- :mod:`analysis.quality`     rater-quality flags and explicit exclusions
- :mod:`analysis.simulate`    synthetic studies with known truth in Appendix G's design
- :mod:`analysis.sections`, :mod:`analysis.report`, :mod:`analysis.plots`  the report layer
"""
