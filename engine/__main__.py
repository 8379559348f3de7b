"""``python -m engine``: the foretell command line (also what ``torchrun -m engine`` starts)."""

from engine.cli import main

main()
