"""The surprisal report on a 100,000-word document: how long `foretell score --html` takes, how
big the page is, and how it behaves in headless Chromium (load, repaint, tooltip).

    python bench/report_large.py [--words 100000] [-m MODEL]

The peer, measured in the same run: the same text as a plain HTML page of the same words with no
spans or script (what the browser needs just to lay the text out).
"""

from __future__ import annotations

import argparse
import html
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def document(words: int) -> str:
    from engine.default_model import default_text

    text, out, count = default_text(), [], 0
    while count < words:
        for line in text.splitlines():
            out.append(line)
            count += len(line.split())
            if count >= words:
                break
    return "\n".join(out) + "\n"


def browser_timings(page: Path) -> dict:
    from selenium.webdriver.common.by import By

    from tests.test_report import chromium

    browser = chromium()
    try:
        t0 = time.perf_counter()
        browser.get(page.as_uri())  # returns after the load event
        loaded = time.perf_counter() - t0
        navigation = browser.execute_script("const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd];")
        out = {"load_s": loaded, "dom_content_loaded_ms": navigation[0], "load_event_ms": navigation[1]}
        n = len(browser.find_elements(By.CSS_SELECTOR, "#text span.w"))
        if browser.find_elements(By.ID, "mode"):
            out["repaint_bits_ms"] = browser.execute_script(
                "const m = document.getElementById('mode'); const t = performance.now(); m.value = 'bits';"
                "m.dispatchEvent(new Event('change')); document.body.offsetHeight; return performance.now() - t;")
            # The first hover also builds the span -> index map; both are timed in the page.
            out["first_hover_ms"], out["hover_ms"] = (browser.execute_script(
                "const s = document.querySelectorAll('#text span.w')[arguments[0]]; s.scrollIntoView({block: 'center'});"
                "document.body.offsetHeight;"  # the scroll's own layout is not the tooltip's
                "const t = performance.now(); s.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
                "document.body.offsetHeight; return performance.now() - t;", i) for i in (n // 2, n // 3))
            out["tooltip_shown"] = browser.find_element(By.ID, "tip").is_displayed()
        return out
    finally:
        browser.quit()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=100_000)
    parser.add_argument("-m", "--model", action="append", default=[])
    args = parser.parse_args()
    text = document(args.words)
    with tempfile.TemporaryDirectory() as tmp:
        source, page, plain = Path(tmp) / "doc.txt", Path(tmp) / "report.html", Path(tmp) / "plain.html"
        source.write_text(text)
        models = [flag for name in args.model for flag in ("-m", name)]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "score", "--html", str(page), *models, str(source)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        build = time.perf_counter() - t0
        plain.write_text(f"<!DOCTYPE html><meta charset=utf-8><pre style='white-space:pre-wrap'>{html.escape(text)}</pre>")
        ours, peer = browser_timings(page), browser_timings(plain)
        size = page.stat().st_size
    print(f"machine: {os.cpu_count()} cores; document {len(text.split()):,} words ({len(text):,} characters); model {args.model or ['default']}")
    print(f"foretell score --html: {build:.1f} s, page {size / 1e6:.1f} MB")
    print(f"Chromium (headless): load {ours['load_s']:.2f} s (DOMContentLoaded {ours['dom_content_loaded_ms']:.0f} ms, load event {ours['load_event_ms']:.0f} ms); "
          f"plain page of the same text {peer['load_s']:.2f} s ({peer['load_event_ms']:.0f} ms): {ours['load_s'] / peer['load_s']:.1f}x")
    print(f"repaint of every word (colour by bits) {ours['repaint_bits_ms']:.0f} ms; tooltip on hover {ours['hover_ms']:.1f} ms "
          f"(the first {ours['first_hover_ms']:.0f} ms, building the word index; shown: {ours['tooltip_shown']})")


if __name__ == "__main__":
    main()
