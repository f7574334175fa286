"""Modeling: configs and presets, the encoder, pre-training and task heads,
optimizers and checkpoint conversion.

Importing this package is cheap: keras is imported by the modules that need
it, never here. ``models`` never imports ``data`` or ``bert_cli``.
"""
