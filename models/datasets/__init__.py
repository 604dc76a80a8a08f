"""Dataset readers behind ``models.data`` (one module per format).

Use the facade ``models.data`` (``open_dataset``, ``train_transform``, ``eval_transform``,
the ImageNet class table); the modules here are its implementation.
"""
