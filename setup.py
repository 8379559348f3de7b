"""The compiled parts, both optional: without a C compiler foretell installs and runs the same,
with numpy doing their work (plugins/ngram/stats.py ranks tokens, engine/table.py lays out
`score`'s table)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("plugins.ngram._ranking", ["plugins/ngram/_ranking.c"], optional=True),
                   Extension("engine._table", ["engine/_table.c"], optional=True)])
