"""``foretell serve --tcp``: one language-server session per connection.

pygls's own TCP mode shares one protocol and one workspace between every connection, so a
second client would receive the first one's answers and could close its documents. Here each
connection gets a server of its own (workspace, documents, analyses, lanes, log); ``exit`` ends
that connection only, and the listener stays up for the next.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from pygls.io_ import run_async

from lsp_server.handlers import create_server

logger = logging.getLogger("foretell.tcp")


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, model_name: str | None) -> None:
    server = create_server(model_name)
    stop = threading.Event()

    def end() -> None:
        stop.set()
        writer.close()

    server.protocol.end_session = end
    server.protocol.set_writer(writer)
    try:
        await run_async(stop_event=stop, reader=reader, protocol=server.protocol, logger=logger, error_handler=server.report_server_error)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away mid-message
    finally:
        for timer in server.timers.values():
            timer.cancel()
        server.lanes.close()
        server.editor_log.detach()
        if not writer.is_closing():
            writer.close()


def serve_tcp(host: str, port: int, model_name: str | None = None, listening=None) -> None:
    """Accept connections on ``host:port`` until interrupted, each its own session.
    ``listening(host, port)`` is called once the socket is bound."""

    async def main() -> None:
        listener = await asyncio.start_server(lambda r, w: _session(r, w, model_name), host, port)
        if listening:
            listening(host, port)
        async with listener:
            await listener.serve_forever()

    asyncio.run(main())
