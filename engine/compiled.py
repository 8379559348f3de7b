"""The optional C extensions (see setup.py): built at install where a C compiler is present,
each with a numpy or Python path that gives the same results. ``FORETELL_NO_COMPILED=1`` makes
a process take those paths (the tests compare the two)."""

import os

ALLOWED = not os.environ.get("FORETELL_NO_COMPILED")

try:
    from engine import _tsv as tsv  # score's text read and written (engine/_tsv.c)
except ImportError:  # (built without a C compiler)
    tsv = None
