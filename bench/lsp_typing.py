"""Language-server latency while typing into a 20,000-word document, over stdio.

A pygls client opens the document, types a passage one keystroke at a time (incremental
didChange, then a completion request after each keystroke), measures the full-document surprisal
(first analysis) and its refresh after one-word edits, and reads the server's memory. The same
typing runs against pygls's floor (bench/floor_server.py: empty completions) in the same run.

    python bench/lsp_typing.py [--keystrokes 400]
    FORETELL_HOME=DIR python bench/lsp_typing.py --model ptb-elman   # a model from that store
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
URI = "file:///bench/document.md"
PASSAGE = (
    "The module provides a function that returns the value of the attribute named by the string. "
    "If the object has no such attribute, the default is returned if it is given. "
)


def document(words: int = 20000) -> str:
    sys.path.insert(0, str(ROOT))
    from engine.default_model import default_text

    out, count = [], 0
    for line in default_text().splitlines():
        out.append(line)
        count += len(line.split())
        if count >= words:
            break
    return "\n".join(out) + "\n\n"


def position_at_end(text: str) -> dict:
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1])}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RawClient:
    """A minimal JSON-RPC client over stdio: plain json, so the timings are the server's."""

    def __init__(self, process):
        self.process = process
        self.next_id = 0

    @classmethod
    async def start(cls, command, env):
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, limit=1 << 26
        )
        return cls(process)

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params) -> None:
        self.send({"method": method, "params": params})

    async def request(self, method: str, params):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self._read()
            if message.get("id") == self.next_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message.get("result")
            if "id" in message and "method" in message:  # a request from the server
                self.send({"id": message["id"], "result": None})

    async def _read(self) -> dict:
        length = 0
        while True:
            line = await self.process.stdout.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(await self.process.stdout.readexactly(length))


async def session(command: list[str], env: dict, text: str, keystrokes: int, full: bool, model: str | None = None) -> dict:
    client = await RawClient.start(command, env)
    options = {"foretell": {"model": model, "surprisal": {"debounceMs": 10000}}}
    await client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": options})
    client.notify("initialized", {})
    # Warm up on a small document (the model loads on first use), then open the big one and
    # time from didOpen to its semantic tokens: what an editor waits for its colours.
    warm = "file:///bench/warm.md"
    client.notify("textDocument/didOpen", {"textDocument": {"uri": warm, "languageId": "markdown", "version": 1, "text": "The "}})
    await client.request("textDocument/completion", {"textDocument": {"uri": warm}, "position": {"line": 0, "character": 4}})
    version, out = 1, {}
    ident = {"uri": URI}
    t0 = time.perf_counter()
    client.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": text}})
    if full:
        result = await client.request("textDocument/semanticTokens/full", {"textDocument": ident})
        out["full_semantic_tokens_ms"] = 1000 * (time.perf_counter() - t0)
        result_id = result["resultId"]
        t0 = time.perf_counter()
        await client.request("foretell/surprisal", {"textDocument": ident})
        out["full_surprisal_request_ms"] = 1000 * (time.perf_counter() - t0)
    latencies = []
    typed = (PASSAGE * (keystrokes // len(PASSAGE) + 1))[:keystrokes]
    for ch in typed:
        pos = position_at_end(text)
        version += 1
        text += ch
        client.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"range": {"start": pos, "end": pos}, "text": ch}]})
        t0 = time.perf_counter()
        await client.request("textDocument/completion", {"textDocument": ident, "position": position_at_end(text)})
        latencies.append(time.perf_counter() - t0)
    out["completion_p50_ms"] = 1000 * float(np.percentile(latencies, 50))
    out["completion_p99_ms"] = 1000 * float(np.percentile(latencies, 99))
    if full:
        refresh = []
        rng = random.Random(0)
        lines = text.split("\n")
        for _ in range(20):
            line = rng.choice([i for i, l in enumerate(lines) if len(l.split()) > 3])
            col = lines[line].index(" ") + 1
            version += 1
            lines[line] = lines[line][:col] + "new " + lines[line][col:]
            at = {"line": line, "character": col}
            client.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"range": {"start": at, "end": at}, "text": "new "}]})
            t0 = time.perf_counter()
            delta = await client.request("textDocument/semanticTokens/full/delta", {"textDocument": ident, "previousResultId": result_id})
            refresh.append(time.perf_counter() - t0)
            result_id = delta["resultId"]
        out["refresh_after_edit_p50_ms"] = 1000 * float(np.percentile(refresh, 50))
        out["refresh_after_edit_max_ms"] = 1000 * float(max(refresh))
    out["server_rss_mb"] = rss_mb(client.process.pid)
    await client.request("shutdown", None)
    client.notify("exit", None)
    await client.process.wait()
    return out


def analysis_timing(text: str, home: str, name: str | None) -> dict:
    """The same analysis in-process, without JSON: what the server's worker spends."""
    os.environ["FORETELL_HOME"] = home
    from engine.default_model import load_model
    from engine.store import ModelStore
    from engine.analysis import DocumentAnalysis
    from lsp_server.positions import PositionMap
    from lsp_server.features.surprisal import semantic_token_data

    model = load_model(ModelStore(), name)
    t0 = time.perf_counter()
    first = DocumentAnalysis(model, text)
    t1 = time.perf_counter()
    semantic_token_data(first, PositionMap(text))
    t2 = time.perf_counter()
    edited = text.replace(" the ", " the new ", 1)
    t3 = time.perf_counter()
    DocumentAnalysis(model, edited, first)
    t4 = time.perf_counter()
    return {
        "words": int(len(first.words)),
        "analysis_ms": 1000 * (t1 - t0),
        "semantic_tokens_ms": 1000 * (t2 - t1),
        "reanalysis_after_edit_ms": 1000 * (t4 - t3),
        "blocks": len(first.blocks),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keystrokes", type=int, default=400)
    parser.add_argument("--model", help="a model in FORETELL_HOME's store (default: the default model, built in a fresh store)")
    args = parser.parse_args()
    text = document()
    with tempfile.TemporaryDirectory() as scratch:
        home = os.environ["FORETELL_HOME"] if args.model else scratch
        env = {**os.environ, "FORETELL_HOME": home, "PYTHONPATH": str(ROOT)}
        inproc = analysis_timing(text, home, args.model)  # also builds the default model into the store
        ours = asyncio.run(session([sys.executable, "-m", "lsp_server"], env, text, args.keystrokes, full=True, model=args.model))
        floor = asyncio.run(session([sys.executable, str(ROOT / "bench" / "floor_server.py")], env, text, args.keystrokes, full=False))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; document: 20,000 words ({inproc['words']:,} word and punctuation tokens) in {inproc['blocks']:,} blocks; model {args.model or 'default'}")
    print(f"completion        p50 {ours['completion_p50_ms']:.2f} ms, p99 {ours['completion_p99_ms']:.2f} ms over {args.keystrokes} keystrokes "
          f"(pygls floor p50 {floor['completion_p50_ms']:.2f} ms, p99 {floor['completion_p99_ms']:.2f} ms; ours/floor p99 {ours['completion_p99_ms'] / floor['completion_p99_ms']:.1f}x)")
    print(f"full surprisal    didOpen to semanticTokens/full response {ours['full_semantic_tokens_ms']:.0f} ms "
          f"({inproc['analysis_ms']:.0f} ms analysis + {inproc['semantic_tokens_ms']:.0f} ms encoding in-process); "
          f"foretell/surprisal round trip {ours['full_surprisal_request_ms']:.0f} ms (a JSON object per token)")
    print(f"refresh after a one-word edit: {inproc['reanalysis_after_edit_ms']:.1f} ms re-analysis in-process; semanticTokens/full/delta round trip "
          f"p50 {ours['refresh_after_edit_p50_ms']:.1f} ms, max {ours['refresh_after_edit_max_ms']:.1f} ms")
    print(f"server memory     {ours['server_rss_mb']:.0f} MB RSS with the model loaded (pygls floor {floor['server_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
