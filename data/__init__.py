"""Tokenization and data pipelines: vocabularies, the WordPiece tokenizer,
pre-training example creation, TFRecord schemas and task readers.

Importing this package is cheap: TensorFlow is imported by the modules that
need it, never here. ``data`` never imports ``models`` or ``bert_cli``.
"""
