"""What one completion costs the language server on a long line, in process: `predict` on the
2,000 characters before each of 120 cursor positions (25 characters apart, 100,000 characters
into a line made of Python's reST library docs), after the warm-up the server does before the
first key (`PrefixIndex.warm`). CPU time, best of 5.

    apt-get install python3.11-doc
    FORETELL_HOME=DIR python bench/completion_context.py [MODEL]
    PYTHONPATH=OTHER_CHECKOUT FORETELL_HOME=DIR python bench/completion_context.py   # to compare
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

DOCS = Path("/usr/share/doc/python3.11/html/_sources/library")


def main() -> None:
    from engine.cli.common import load_model
    from engine.complete import predict, prefix_index

    model = load_model(sys.argv[1] if len(sys.argv) > 1 else None)
    prefix_index(model).warm()
    line = ""
    for path in sorted(DOCS.glob("*.rst.txt")):  # (the library docs from the start, as one line of 110,000 characters or more)
        line += path.read_text(errors="replace").replace("\n", " ") + " "
        if len(line) > 110_000:
            break
    cursors = range(100_000, 103_000, 25)
    calls = []
    for _ in range(5):
        started = time.process_time()
        for at in cursors:
            predict(model, line[at - 2000:at], 10)
        calls.append(1000 * (time.process_time() - started) / len(cursors))
    import engine

    print(f"{Path(engine.__file__).parent.parent}: predict on a 2,000-character context: best {min(calls):.3f} ms a call "
          f"(all {', '.join(f'{c:.3f}' for c in calls)})")


if __name__ == "__main__":
    main()
