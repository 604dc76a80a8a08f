"""Sample-quality metrics of the paper (Section 6, Table 1; Appendix H), one module per concern.

``fidelity``         IS / FID / KID / precision-recall from features (torch-fidelity's code, float64 FID)
``features``         named feature extractors, their weights files, streaming extraction to memmaps
``resnet``, ``domain``  extractors hvqeval registers with torch-fidelity (ResNet-50 pool, domain classifier)
``reference_cache``  content-keyed on-disk cache of reference features and FID statistics
``evaluation``       one sample set against one reference -> result rows
``batch``            TOML specs of many evaluations, resumable against the results store
``neighbours``       nearest neighbours in pixel / VGG-16 fc7 / ResNet-50 avgpool space
"""
