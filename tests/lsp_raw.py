"""A bare JSON-RPC client over stdio for tests that send what no well-behaved client would."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import queue


class RawClient:
    """JSON-RPC over a pair of binary streams (a server's stdio, or a socket's files)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0
        self.responses: dict = {}
        self.notifications: list = []  # those that arrived while a response was awaited

    def _read(self):
        stream = self.reader
        while True:
            length = None
            while True:
                try:
                    line = stream.readline()
                except OSError:  # the server went away (a socket reset)
                    return
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.messages.put(json.loads(stream.read(length)))

    def write_body(self, body: bytes) -> None:
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.writer.flush()

    def send(self, message: dict) -> None:
        self.write_body(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def request(self, method: str, params, wait: bool = True):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.response(self.next_id) if wait else self.next_id

    def notify(self, method: str, params) -> None:
        self.send({"method": method, "params": params})

    def response(self, msg_id, timeout: float = 60.0) -> dict:
        """The response to ``msg_id`` (answering any request the server makes meanwhile)."""
        while msg_id not in self.responses:
            message = self.messages.get(timeout=timeout)
            if "method" in message and "id" in message:
                self.send({"id": message["id"], "result": None})
            elif "id" in message and "method" not in message:
                self.responses[message["id"]] = message
            else:
                self.notifications.append(message)
        return self.responses.pop(msg_id)

    def notification(self, method: str, match=lambda params: True, timeout: float = 60.0) -> dict:
        """The params of the next ``method`` notification that ``match`` accepts."""
        while True:
            message = self.notifications.pop(0) if self.notifications else self.messages.get(timeout=timeout)
            if message.get("method") == method and "id" not in message and match(message.get("params")):
                return message["params"]
            if "method" in message and "id" in message:
                self.send({"id": message["id"], "result": None})
            elif "id" in message:
                self.responses[message["id"]] = message

    def initialize(self, options=None) -> dict:
        result = self.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": options or {}})
        self.notify("initialized", {})
        return result



class RawServer(RawClient):
    """``python -m lsp_server`` (or ``command``) in a subprocess, spoken to over its stdio."""

    def __init__(self, env=None, command=None):
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "lsp_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        super().__init__(self.proc.stdout, self.proc.stdin)

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


class RawTcpClient(RawClient):
    """A connection to ``foretell serve --tcp``."""

    def __init__(self, port: int):
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        super().__init__(self.sock.makefile("rb"), self.sock.makefile("wb"))

    def close(self) -> None:
        self.sock.close()
