"""Building blocks, one per module (paper Appendix A)."""
