"""Training throughput beside PyTorch's examples/word_language_model, in the same run.

    WLM_DIR=/path/to/examples/word_language_model python bench/neural_peer.py [--epochs 1] [--lr 20 --clip 0.25]

The peer is run as it is, from a checkout outside this repository (nothing of it is installed
or copied here), at its PTB settings: 2-layer tanh RNN (RNN_TANH), 200 units, embeddings 200,
bptt 35, batch 20, dropout 0.2, SGD with its learning rate and clip. Then foretell's rnn backend
trains on the same PTB files with the same settings, once with the full softmax (the peer's
architecture, like for like) and once with the adaptive softmax (our default). Printed: training
tokens/s (the peer's from its ms/batch lines) and validation perplexity after the epochs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BATCH, BPTT = 20, 35


def run_peer(wlm: Path, data: Path, epochs: int, lr: float, clip: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(wlm / "main.py"), "--data", str(data), "--model", "RNN_TANH", "--epochs", str(epochs),
               "--lr", str(lr), "--clip", str(clip), "--save", str(Path(tmp) / "model.pt")]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=wlm)
    out = proc.stdout
    ms = [float(m) for m in re.findall(r"ms/batch\s+([\d.]+)", out)]
    valid = re.findall(r"valid ppl\s+([\d.e+]+|inf|nan)", out)
    if not ms:
        raise SystemExit(f"the peer printed no progress; its stderr ends:\n{proc.stderr[-2000:]}")
    return {"tokens_per_s": BATCH * BPTT / (sum(ms) / len(ms) / 1000), "valid": float(valid[-1]) if valid else float("nan"),
            "minutes": (time.monotonic() - started) / 60}


def run_ours(paths: dict, epochs: int, lr: float, clip: float, softmax: str) -> dict:
    from engine.corpus import build_corpus
    from engine.model import options_from_strings
    from engine.plugins import get_backend

    corpus = build_corpus([str(paths["train"])], pretokenized=True)
    cls = get_backend("rnn").cls
    options = options_from_strings(cls.Options, {"cell": "elman", "layers": "2", "hidden": "200", "embedding": "200", "bptt": str(BPTT),
                                                 "batch_size": str(BATCH), "dropout": "0.2", "schedule": "plateau", "lr": str(lr), "clip": str(clip),
                                                 "softmax": softmax, "epochs": str(epochs), "patience": str(epochs), "valid": str(paths["valid"])})
    started = time.monotonic()
    model = cls.fit(corpus, options)
    rates = [m["tokens_per_s"] for m in model.metrics]
    return {"tokens_per_s": sum(rates) / len(rates), "valid": model.metrics[-1]["valid_perplexity"], "minutes": (time.monotonic() - started) / 60}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=20.0, help="the peer's default is 20")
    parser.add_argument("--clip", type=float, default=0.25, help="the peer's default is 0.25")
    args = parser.parse_args()
    wlm = Path(os.environ.get("WLM_DIR", ""))
    if not (wlm / "main.py").exists():
        raise SystemExit("set WLM_DIR to a checkout of pytorch/examples' word_language_model folder")
    from bench.ngram_ptb import prepare

    paths = prepare()
    data = ROOT / "bench" / "data" / "wlm"
    data.mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        link = data / f"{split}.txt"
        if not link.exists():
            link.symlink_to(paths[split])
    print(f"machine: {os.cpu_count()} cores, CPU only; settings: RNN_TANH 2x200, bptt {BPTT}, batch {BATCH}, lr {args.lr}, clip {args.clip}, {args.epochs} epoch(s)")
    rows = [("word_language_model", run_peer(wlm, data, args.epochs, args.lr, args.clip))]
    rows.append(("foretell rnn, softmax=full", run_ours(paths, args.epochs, args.lr, args.clip, "full")))
    rows.append(("foretell rnn, softmax=adaptive", run_ours(paths, args.epochs, args.lr, args.clip, "adaptive")))
    peer = rows[0][1]["tokens_per_s"]
    for name, r in rows:
        print(f"{name:<32} {r['tokens_per_s']:>8,.0f} tokens/s ({r['tokens_per_s'] / peer:.2f}x the peer)  "
              f"valid perplexity {r['valid']:.2f} after {args.epochs} epoch(s), {r['minutes']:.1f} min")


if __name__ == "__main__":
    main()
