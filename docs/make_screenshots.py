"""Screenshots for the README: the surprisal report page in headless Chromium, with a word's
tooltip showing. (The gradient plot comes from `foretell diagnose gradients -o`.)

    python docs/make_screenshots.py [TEXT_FILE] [-m MODEL ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = """\
A function returns a value to its caller. The return statement ends the function and gives the
value of its expression back; without one, the function returns None.

Lists are mutable sequences. A tuple cannot be changed after it is made, which is why a tuple can
be a dictionary key and a list cannot. The zebra sorted the dictionary by its keys.
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("text", nargs="?")
    parser.add_argument("-m", "--model", action="append", default=[])
    parser.add_argument("--word", default="zebra", help="the word to hover")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "report.png"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tests.test_report import chromium

    with tempfile.TemporaryDirectory() as tmp:
        text = Path(args.text) if args.text else Path(tmp) / "sample.txt"
        if not args.text:
            text.write_text(SAMPLE)
        page = Path(tmp) / "report.html"
        models = [flag for name in args.model for flag in ("-m", name)]
        subprocess.run([sys.executable, "-m", "engine", "score", "--html", str(page), *models, str(text)], check=True)
        browser = chromium()
        try:
            browser.set_window_size(1200, 640)
            browser.get(page.as_uri())
            word = next(s for s in browser.find_elements(By.CSS_SELECTOR, "#text span.w") if s.text == args.word)
            ActionChains(browser).move_to_element(word).perform()
            browser.save_screenshot(args.output)
        finally:
            browser.quit()
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
