"""Training and sampling stack for hierarchical autoregressive image models (torch only).

Paper: De Fauw, Dieleman, Simonyan 2019, "Hierarchical Autoregressive Image Models with
Auxiliary Decoders". Never imports ``hvqeval``, ``study_app`` or ``analysis``.
"""
