"""``python -m lsp_server``: the language server over stdio (same as ``foretell serve``)."""

from lsp_server.handlers import create_server

create_server().start_io()
