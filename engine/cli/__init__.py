"""The ``foretell`` command line: a thin layer over the engine. Domain errors become one
sentence on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading

# numpy's BLAS starts a thread per core when numpy is imported (10-40 ms of every command on a
# busy 2-core machine); nothing here multiplies matrices large enough to use them (torch has
# its own threads). A user's own setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402

from engine import __version__  # noqa: E402
from engine.errors import ForetellError, out_of_space  # noqa: E402


# Each command and the modules that define it (``register``), imported when the command runs
# or help lists it: ``foretell predict`` imports the query commands only. ``learn`` adds
# ``models history``.
COMMANDS = {
    **dict.fromkeys(("predict", "score", "perplexity", "evaluate", "generate"), "query"),
    "models": "models learn", "backends": "models", "train": "train", "learn": "learn", "forget": "learn",
    "incognito": "privacy", "exclude": "privacy", "mix": "mix", "diagnose": "diagnose", "serve": "serve",
}


class ForetellGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        for module in COMMANDS.get(name, "").split():
            importlib.import_module(f"engine.cli.{module}").register(self)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ForetellError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            ctx.exit(0)
        except OSError as exc:
            if out_of_space(exc):
                raise click.ClickException("the disk is full (no space left to write, or a file-size limit was reached); "
                                           "nothing was changed: models and learned documents are replaced only once written whole") from None
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except MemoryError:
            raise click.ClickException("out of memory; try a smaller corpus, --max-vocab or a lower --order") from None
        except Exception as exc:
            if os.environ.get("FORETELL_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error ({type(exc).__name__}: {exc}); rerun with FORETELL_DEBUG=1 for details"
            ) from None


@click.group(cls=ForetellGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="foretell")
def cli():
    """Local, private text prediction trained on your own writing."""


def main():
    try:
        cli(prog_name="foretell")  # (click always ends with SystemExit, carrying the status)
    except SystemExit as done:
        exit_without_teardown(done)


def exit_without_teardown(done: SystemExit):
    """End the process with ``done``'s status, skipping Python's teardown: a last garbage
    collection over every object and the clearing of some 300 modules, 20 ms of the 190 a
    ``foretell predict`` takes, for memory the system takes back anyway. What the teardown would
    do that matters is done first: the output flushed, the atexit handlers run. Where that
    cannot be done safely (a thread still working, output that does not flush, a status that is
    a message), the usual exit."""
    if not (done.code is None or isinstance(done.code, int)):
        raise done
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise done  # (the usual exit waits for it)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # (what interpreter shutdown would run; each runs once)
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or a full disk: the usual exit reports it as before
        raise done from None
    os._exit(done.code or 0)
