"""``foretell serve``: the language server over stdio, or TCP on loopback."""

from __future__ import annotations

import click

from engine.errors import ForetellError


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    try:
        number = int(port)
    except ValueError:
        raise ForetellError(f"--tcp takes [HOST:]PORT, not {value!r}") from None
    if not 0 < number < 65536:
        raise ForetellError(f"port must be between 1 and 65535, not {number}")
    return host or "127.0.0.1", number


@click.command()
@click.option("-m", "--model", "model_name", metavar="NAME", help="Model to serve (default: the default model).")
@click.option("--tcp", metavar="[HOST:]PORT", help="Listen on TCP (loopback unless HOST is given) instead of stdio.")
def serve(model_name, tcp):
    """Run the language server (completion, inline completion, hover, surprisal) over stdio."""
    from lsp_server.handlers import create_server

    if model_name:
        from engine.store import validate_name

        validate_name(model_name)
    if tcp:
        from lsp_server.tcp import serve_tcp

        host, port = parse_address(tcp)
        serve_tcp(host, port, model_name, lambda h, p: click.echo(f"foretell language server listening on {h}:{p} (a session per connection)", err=True))
    else:
        create_server(model_name).start_io()


def register(cli):
    cli.add_command(serve)
