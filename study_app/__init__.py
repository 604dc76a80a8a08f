"""Human-study web app (paper Section 7.3, Appendix G): realism ratings and pairwise preferences."""
