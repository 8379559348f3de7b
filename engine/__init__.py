"""foretell's engine: tokenization, vocabulary, the model interface, scoring, sampling,
completion, the model store and the CLI. Importing it loads no plugin and no torch."""

__version__ = "0.1.0"
