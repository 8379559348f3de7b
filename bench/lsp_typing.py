"""Language-server latency while a person types, with the defaults a user has.

The model is what `foretell train DOCS/` gives (saved as `default`, no option changed), trained
on Python's reST documentation (Debian's python3.11-doc, 1.5M tokens, minus every 20th file,
held out). The document is 20,000 words of the held-out files in one of two shapes:
`paragraphs` (soft-wrapped: one paragraph a line, blank lines between) or `long-lines` (8,000
words a line). `foretell serve` starts with no initialization options at all.

A raw JSON-RPC client opens the document and at once starts typing a new paragraph, at the end
(n-gram) or in the middle (rnn), one key every `--pace` seconds (0: no pause), with a completion
request after every key. Like an editor it also asks for the document's semantic tokens on
opening and, as VS Code does, for a delta against the last result after changes (one request
outstanding at a time). Reported: completion
p50/p99; the time from the last key to semantic tokens for the final text ("colours fresh");
the server's peak and final RSS. The same typing runs against pygls's floor
(bench/floor_server.py: empty completions, nothing else) in the same run.

    apt-get install python3.11-doc
    python bench/lsp_typing.py                       # n-gram, both shapes, 150 ms and no pause
    python bench/lsp_typing.py --backend rnn --minutes 4 --home /tmp/ft-rnn   # trains once, keeps it
    python bench/lsp_typing.py --backend rnn --minutes 4 --max-vocab 10000 --home /tmp/ft-rnn10k
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOCS = Path("/usr/share/doc/python3.11/html/_sources")
URI = "file:///bench/document.md"
PASSAGE = (
    "The module provides a function that returns the value of the attribute named by the string. "
    "If the object has no such attribute, the default is returned if it is given. "
)


def split_files() -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in DOCS.rglob("*.txt") if p.is_file())
    if not files:
        sys.exit(f"no documentation under {DOCS}: apt-get install python3.11-doc")
    return [f for i, f in enumerate(files) if i % 20 != 7], [f for i, f in enumerate(files) if i % 20 == 7]


def document(files: list[Path], shape: str, words: int = 20000) -> str:
    """Held-out paragraphs, each joined into one line (soft wrap), ``words`` words in all."""
    paragraphs = []
    count = 0
    while count < words:
        for f in files:
            for block in f.read_text(encoding="utf-8", errors="replace").split("\n\n"):
                line = " ".join(block.split())
                if len(line.split()) >= 3:
                    paragraphs.append(line)
                    count += len(line.split())
                if count >= words:
                    break
            if count >= words:
                break
    if shape == "paragraphs":
        return "\n\n".join(paragraphs) + "\n"
    flat = " ".join(paragraphs).split(" ")
    return "\n\n".join(" ".join(flat[i : i + 8000]) for i in range(0, len(flat), 8000)) + "\n"


def ensure_model(home: Path, backend: str, minutes: float, files: list[Path], max_vocab: int | None = None) -> str:
    """Train the user's default model once (kept in ``home`` between runs)."""
    os.environ["FORETELL_HOME"] = str(home)
    from engine.corpus import build_corpus
    from engine.model import options_from_strings
    from engine.plugins import get_backend
    from engine.store import ModelStore

    store = ModelStore()
    if store.exists("default") and store.manifest("default")["backend"] == backend:
        return store.manifest("default")["backend"]
    corpus = build_corpus([str(f) for f in files], max_vocab=max_vocab)
    cls = get_backend(backend).cls
    options = options_from_strings(cls.Options, {"max_minutes": str(minutes)} if backend == "rnn" else {})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        kwargs = {"workdir": Path(work)} if backend == "rnn" else {}
        model = cls.fit(corpus, options, **kwargs)
    store.save("default", model, corpus=corpus.summary)
    print(f"trained default ({backend}): {corpus.summary['tokens']:,} tokens, vocabulary {len(model.vocab):,}, {time.perf_counter() - t0:.0f} s", flush=True)
    return backend


class Client:
    """A minimal JSON-RPC client over stdio (plain json, so the timings are the server's)."""

    def __init__(self, process):
        self.process = process
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future] = {}
        self.reader = asyncio.ensure_future(self._read_all())

    @classmethod
    async def start(cls, command, env):
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, limit=1 << 27
        )
        return cls(process)

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params) -> asyncio.Future:
        self.next_id += 1
        future = self.waiting[self.next_id] = asyncio.get_running_loop().create_future()
        self.send({"id": self.next_id, "method": method, "params": params})
        return future

    async def _read_all(self) -> None:
        while True:
            length = 0
            while True:
                line = await self.process.stdout.readline()
                if line == b"":
                    return
                if line == b"\r\n":
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(await self.process.stdout.readexactly(length))
            if "method" in message:
                if "id" in message:  # a request from the server (refresh, progress): accept it
                    self.send({"id": message["id"], "result": None})
                continue
            future = self.waiting.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message.get("result"))


def position_of(text: str, offset: int) -> dict:
    line = text.count("\n", 0, offset)
    return {"line": line, "character": offset - (text.rfind("\n", 0, offset) + 1)}


def memory_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


async def session(command: list[str], env: dict, text: str, where: str, keys: int, pace: float, colours: bool) -> dict:
    client = await Client.start(command, env)
    await client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    client.notify("initialized", {})
    ident = {"uri": URI}
    if where == "middle":
        middle = text.find("\n\n", len(text) // 2)
        at = middle if middle >= 0 else len(text)
    else:
        at = len(text.rstrip("\n"))
    version = 1
    client.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": text}})
    tokens_request = client.request("textDocument/semanticTokens/full", {"textDocument": ident}) if colours else None
    typed = "\n\n" + (PASSAGE * (keys // len(PASSAGE) + 1))[:keys]
    latencies = []
    result_id = None
    last_key = time.perf_counter()
    for n, ch in enumerate(typed):
        started = time.perf_counter()
        pos = position_of(text, at)
        text = text[:at] + ch + text[at:]
        at += 1
        version += 1
        client.notify("textDocument/didChange", {"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"range": {"start": pos, "end": pos}, "text": ch}]})
        last_key = time.perf_counter()
        if n >= 2:  # the blank line opening the paragraph is not a key one waits on
            t0 = time.perf_counter()
            await client.request("textDocument/completion", {"textDocument": ident, "position": position_of(text, at)})
            latencies.append(time.perf_counter() - t0)
        if colours and tokens_request.done():  # as VS Code does: a delta against the last result
            last = tokens_request.result()
            if last and last.get("resultId"):
                result_id = last["resultId"]
            tokens_request = client.request("textDocument/semanticTokens/full/delta", {"textDocument": ident, "previousResultId": result_id}) if result_id else client.request("textDocument/semanticTokens/full", {"textDocument": ident})
        await asyncio.sleep(max(0.0, pace - (time.perf_counter() - started)))
    out = {"p50": 1000 * float(np.percentile(latencies, 50)), "p99": 1000 * float(np.percentile(latencies, 99)), "keys": len(latencies)}
    out["slowest"] = sorted(((round(1000 * t, 1), i) for i, t in enumerate(latencies)), reverse=True)[:3]
    if colours:
        while True:  # the editor asks again until it gets colours for what is on screen now
            await tokens_request
            result = await client.request("textDocument/semanticTokens/full", {"textDocument": ident})
            if result is not None:
                break
            await asyncio.sleep(0.01)
        out["fresh_s"] = time.perf_counter() - last_key
        out["tokens"] = len(result["data"]) // 5
    out["peak_mb"], out["rss_mb"] = memory_mb(client.process.pid)
    await client.request("shutdown", None)
    client.notify("exit", None)
    await client.process.wait()
    client.reader.cancel()
    return out


def analysis_against_floor(home: Path, text: str) -> str:
    """A fresh analysis of the document in-process, beside the compute floor for a recurrent
    model: the recurrence over the stream in one pass and, for every position, the output
    layer's logits and one exp per word (what any exact rank and entropy must compute)."""
    import resource

    import torch

    os.environ["FORETELL_HOME"] = str(home)
    from engine.analysis import DocumentAnalysis
    from engine.default_model import load_model
    from engine.store import ModelStore

    model = load_model(ModelStore(), None)
    DocumentAnalysis(model, text[:3000])  # warm (the float32 copy is made on first use)
    t0 = time.perf_counter()
    analysis = DocumentAnalysis(model, text)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    net = model._analysis_net()
    ids = torch.as_tensor(np.concatenate([b.ids for b in analysis.blocks]))[None]
    t0 = time.perf_counter()
    with torch.inference_mode():
        features, _ = net.features(ids)
        rows = features[0]
        layer = net.out
        for i in range(0, len(rows), 32):
            h = rows[i : i + 32]
            if layer.kind == "full":
                layer.linear(h).exp().sum()
            else:
                layer.adaptive.head(h).exp().sum()
                for tail in layer.adaptive.tail:
                    tail(h).exp().sum()
    floor = time.perf_counter() - t0
    return (f"fresh analysis in-process: {seconds:.2f} s for {len(analysis.ids):,} tokens (compute floor {floor:.2f} s: recurrence, logits and one exp "
            f"per word at every position; ratio {seconds / floor:.2f}x); process peak RSS {rss:.0f} MB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="ngram", choices=["ngram", "rnn"])
    parser.add_argument("--minutes", type=float, default=4.0, help="rnn training budget")
    parser.add_argument("--home", help="FORETELL_HOME to keep the trained model in (default: a temporary one)")
    parser.add_argument("--max-vocab", type=int, help="as `foretell train --max-vocab` (10000: a PTB-size model)")
    parser.add_argument("--keys", type=int, default=122)
    parser.add_argument("--shapes", default="paragraphs,long-lines")
    parser.add_argument("--paces", default="0.15,0")
    args = parser.parse_args()
    train, held_out = split_files()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(args.home or scratch)
        home.mkdir(parents=True, exist_ok=True)
        ensure_model(home, args.backend, args.minutes, train, args.max_vocab)
        env = {**os.environ, "FORETELL_HOME": str(home), "PYTHONPATH": str(ROOT)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python caches bytecode: the server starts as theirs does
        where = "middle" if args.backend == "rnn" else "end"
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; model: default ({args.backend}), server defaults; typing {args.keys} keys into a new paragraph at the {where}")
        if args.backend == "rnn":
            print(analysis_against_floor(home, document(held_out, "paragraphs")), flush=True)
        for shape in args.shapes.split(","):
            text = document(held_out, shape)
            for pace in (float(p) for p in args.paces.split(",")):
                ours = asyncio.run(session([sys.executable, "-m", "lsp_server"], env, text, where, args.keys, pace, colours=True))
                floor = asyncio.run(session([sys.executable, str(ROOT / "bench" / "floor_server.py")], env, text, where, args.keys, pace, colours=False))
                print(
                    f"{shape:10} pace {pace * 1000:3.0f} ms | completion p50 {ours['p50']:6.2f} ms, p99 {ours['p99']:6.2f} ms "
                    f"(floor p50 {floor['p50']:.2f}, p99 {floor['p99']:.2f}; p99 ratio {ours['p99'] / floor['p99']:.1f}x) | "
                    f"colours fresh {ours['fresh_s']:.2f} s after the last key ({ours['tokens']:,} words) | "
                    f"server RSS peak {ours['peak_mb']:.0f} MB, end {ours['rss_mb']:.0f} MB (floor {floor['peak_mb']:.0f} MB)",
                    f" | slowest keys (ms, index) {ours['slowest']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
