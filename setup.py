"""The one compiled part, optional: without a C compiler foretell installs and runs the same,
ranking tokens with numpy instead (plugins/ngram/stats.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("plugins.ngram._ranking", ["plugins/ngram/_ranking.c"], optional=True)])
