"""The compiled parts, both optional: without a C compiler foretell installs and runs the same,
with numpy and Python doing their work (plugins/ngram/stats.py ranks tokens, engine/table.py
lays out `score`'s table, engine/tokenizer.py splits pretokenized lines)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("plugins.ngram._ranking", ["plugins/ngram/_ranking.c"], optional=True),
                   Extension("engine._tsv", ["engine/_tsv.c"], optional=True)])
