"""The surprisal report page, the training-curve and gradient plots, and the page checked in a
real browser (headless Chromium through chromedriver)."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import SMALL_TEXT, run_cli

TEXT = SMALL_TEXT + "\nThe zebra <sat> on the mat & the dog ran. </script> is not the end.\n"
SCREENSHOTS = Path(os.environ.get("FORETELL_SCREENSHOTS", "")) if os.environ.get("FORETELL_SCREENSHOTS") else None


@pytest.fixture
def report(tmp_path):
    (tmp_path / "train.txt").write_text(SMALL_TEXT)
    (tmp_path / "text.txt").write_text(TEXT)
    run_cli("train", "--name", "tri", "--order", "3", str(tmp_path / "train.txt"))
    run_cli("train", "--name", "bi", "--order", "2", str(tmp_path / "train.txt"))
    out = run_cli("score", "--html", str(tmp_path / "report.html"), "-m", "tri", str(tmp_path / "text.txt"))
    assert "Wrote" in out.stdout
    scores = json.loads(run_cli("score", "-m", "tri", "--json", str(tmp_path / "text.txt")).stdout)
    return tmp_path, scores


def page_data(path: Path) -> dict:
    page = path.read_text()
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1).replace("<\\/", "</"))


def test_the_page_is_self_contained_and_carries_the_scores(report):
    tmp_path, scores = report
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no network
    assert "<sat>" not in page and "&lt;" in page and "&amp;" in page  # the text is escaped, not interpreted
    assert page.count("</script>") == 2  # the JSON's and the code's own; the text's is escaped everywhere
    model = page_data(tmp_path / "report.html")["models"][0]
    shown = [t for t in scores["tokens"] if t["start"] is not None]
    assert model["rank"] == [t["rank"] for t in shown]
    assert model["bits"] == pytest.approx([t["surprisal_bits"] for t in shown], abs=1e-3)
    assert model["perplexity"] == pytest.approx(scores["perplexity"])
    assert len(model["expected"][0]) == 5 and model["expected_prob"][0] == sorted(model["expected_prob"][0], reverse=True)


def test_two_models_side_by_side_and_bad_requests(report):
    tmp_path, _ = report
    run_cli("score", "--html", str(tmp_path / "both.html"), "-m", "tri", "-m", "bi", str(tmp_path / "text.txt"))
    models = page_data(tmp_path / "both.html")["models"]
    assert [m["name"] for m in models] == ["tri", "bi"] and models[0]["start"] == models[1]["start"]
    out = run_cli("score", "-m", "tri", "-m", "bi", str(tmp_path / "text.txt"), check=False)
    assert out.returncode == 1 and "one model at a time" in out.stderr


def test_training_curves_and_gradient_plot(tmp_path):
    (tmp_path / "train.txt").write_text(SMALL_TEXT * 8)
    for name, cell in (("elman", "elman"), ("lstm", "lstm")):
        run_cli("train", "--backend", "rnn", "--name", name, "-O", f"cell={cell}", "-O", "epochs=2", "-O", "hidden=16", "-O", "embedding=16", str(tmp_path / "train.txt"))
    run_cli("models", "plot", "elman", "lstm", "-o", str(tmp_path / "curves.svg"))
    assert (tmp_path / "curves.svg").read_text().count("<svg") == 1
    out = run_cli("diagnose", "gradients", "-m", "elman", "-m", "lstm", "--samples", "16", "--distance", "20", "--json",
                  "-o", str(tmp_path / "grad.png"), str(tmp_path / "train.txt"))
    results = json.loads(out.stdout)["results"]
    assert [r["cell"] for r in results] == ["elman", "lstm"] and all(len(r["norms"]) == 21 for r in results)
    assert all(r["norms"][20] < r["norms"][0] for r in results)  # the signal fades with distance
    assert 0 <= results[0]["training"]["clipped_share"] <= 1
    assert (tmp_path / "grad.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli("diagnose", "gradients", "-m", "default", str(tmp_path / "train.txt"), check=False)
    assert bad.returncode == 1 and "need a recurrent (rnn) model" in bad.stderr


def chromium():
    browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver):
        if os.environ.get("FORETELL_REQUIRE_BROWSER"):
            pytest.fail("FORETELL_REQUIRE_BROWSER is set but chromium/chromedriver are not installed")
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_report_in_a_real_browser(report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    tmp_path, scores = report
    shown = [t for t in scores["tokens"] if t["start"] is not None]
    browser = chromium()
    try:
        browser.get((tmp_path / "report.html").as_uri())
        spans = browser.find_elements(By.CSS_SELECTOR, "#text span.w")
        assert [s.text for s in spans] == [t["token"] for t in shown]
        colours = {}
        for i in range(4):  # what each rank bucket looks like, from the page's own legend
            colours[i] = browser.execute_script(f"return getComputedStyle(document.querySelector('#legend .b{i}')).backgroundColor")
        assert len(set(colours.values())) == 4
        painted = browser.execute_script("return Array.from(document.querySelectorAll('#text span.w')).map(s => getComputedStyle(s).backgroundColor)")
        expected = [colours[0 if t["rank"] <= 10 else 1 if t["rank"] <= 100 else 2 if t["rank"] <= 1000 else 3] for t in shown]
        assert painted == expected
        zebra = next(i for i, t in enumerate(shown) if t["token"] == "zebra")
        ActionChains(browser).move_to_element(spans[zebra]).perform()
        tip = browser.find_element(By.ID, "tip")
        assert tip.is_displayed()
        assert f"{shown[zebra]['surprisal_bits']:.2f} bits" in tip.text and "out of vocabulary" in tip.text and "expected:" in tip.text
        browser.find_element(By.ID, "mode").send_keys("s")  # colour by surprisal in bits
        continuous = browser.execute_script("return getComputedStyle(document.querySelectorAll('#text span.w')[0]).backgroundColor")
        assert continuous not in colours.values()
        shot = (SCREENSHOTS or tmp_path) / "report.png"
        ActionChains(browser).move_to_element(spans[zebra]).perform()
        browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        browser.quit()
