"""The report and the comparison page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``
through selenium): no console errors, every image decoded, screenshots saved. A broken page is the control
that the checks can fail. Skipped only where /usr/bin/chromium is absent.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from analysis_fixtures import GOOD_DETECTIONS, WEAK_DETECTIONS, make_run, make_validation_set
from fashionparse.analysis.report import build_report, compare_runs

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")

torch.set_num_threads(1)  # overlays are small; more threads only contend with other work on 2 cores
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER.exists(), "chromium is installed but chromium-driver is not"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1400, 1000)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser_runs")
    gt_json, image_dir = make_validation_set(root)
    se = make_run(root, "se", GOOD_DETECTIONS, gt_json, image_dir)
    eca = make_run(root, "eca", WEAK_DETECTIONS, gt_json, image_dir, attention="eca")
    return {"root": root, "report": build_report(se, gallery_size=2, progress=False),
            "compare": compare_runs([se, eca], root / "compare", progress=False)}


@pytest.fixture(scope="module")
def loopback(pages: dict[str, Path]) -> Iterator[str]:
    """An http server on 127.0.0.1 serving the runs folder; yields its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(pages["root"])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _inspect(driver: object, url: str, screenshot: Path) -> tuple[list[dict], list[list]]:
    """Open ``url``; return (console errors, images that did not decode as [alt, complete, naturalWidth])."""
    driver.get_log("browser")  # drop anything logged before
    driver.get(url)
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert driver.save_screenshot(str(screenshot))
    with Image.open(screenshot) as shot:
        assert shot.format == "PNG" and shot.width == 1400 and shot.height > 500
    return errors, images


def test_report_in_chromium(browser: object, pages: dict[str, Path], loopback: str, tmp_path: Path) -> None:
    url = f"{loopback}/{pages['report'].relative_to(pages['root']).as_posix()}"
    errors, images = _inspect(browser, url, tmp_path / "report.png")
    assert errors == []
    assert len(images) >= 4 + 14 + 4  # figures, condition galleries, failure galleries
    assert [i for i in images if not (i[1] and i[2] > 0)] == []
    assert browser.title == "fashionparse report: se"
    print(f"screenshot: {tmp_path / 'report.png'}")


def test_comparison_in_chromium(browser: object, pages: dict[str, Path], tmp_path: Path) -> None:
    errors, images = _inspect(browser, pages["compare"].as_uri(), tmp_path / "compare.png")
    assert errors == [] and images and all(i[1] and i[2] > 0 for i in images)
    assert browser.execute_script("return document.querySelectorAll('td.best').length") > 0
    print(f"screenshot: {tmp_path / 'compare.png'}")


def test_checks_catch_a_broken_page(browser: object, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img alt="broken" src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom")</script></body></html>')
    errors, images = _inspect(browser, page.as_uri(), tmp_path / "broken.png")
    assert any("boom" in e["message"] for e in errors)
    assert images == [["broken", True, 0]]
