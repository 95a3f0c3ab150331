"""The web page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium):
upload a photo, see the overlay on the canvas and the legend, no console errors, save a screenshot.

The service runs under uvicorn on 127.0.0.1 (a free port picked by the OS). Skipped only when
/usr/bin/chromium is absent; CI installs it with ``apt-get install -y chromium chromium-driver``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
THRESHOLD = 0.05
BACKGROUND = (128, 128, 128)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium "
                                                              "chromium-driver)")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base_url(tiny_checkpoint: Path) -> Iterator[str]:
    """The service on a loopback socket the OS picked, served by uvicorn in a background thread."""
    import uvicorn

    from fashionparse.serving.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = create_app(tiny_checkpoint, device="cpu", score_threshold=THRESHOLD)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture()
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_shows_overlay_and_legend(base_url: str, browser, tmp_path: Path) -> None:
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    picture = tmp_path / "plain.png"  # a flat grey picture: every pixel that is not grey was drawn by the page
    Image.new("RGB", (240, 200), BACKGROUND).save(picture)
    expected = httpx.post(f"{base_url}/v1/parse", files={"file": picture.open("rb")}, timeout=60).json()
    assert expected["instances"], "the test model should find something"

    browser.get(base_url + "/")
    browser.find_element(By.ID, "file").send_keys(str(picture))
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     in ("done", "error"))
    status = browser.find_element(By.ID, "status").text
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", status
    assert f"{len(expected['instances'])} garments" in status

    # the legend: one row per instance, best score first, with its category and score
    rows = browser.find_elements(By.CSS_SELECTOR, "#legend tbody tr.instance")
    best_first = sorted(expected["instances"], key=lambda i: -i["score"])
    assert [r.text.split()[-1] for r in rows] == [f"{i['score']:.2f}" for i in best_first]
    assert [" ".join(r.text.split()[:-1]) for r in rows] == [i["category_name"] for i in best_first]

    # the overlay: the canvas has the photo's size and coloured pixels where the page drew
    width, height, drawn = browser.execute_script("""
        const c = document.getElementById("overlay");
        const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let drawn = 0;
        for (let i = 0; i < px.length; i += 4) {
          if (Math.abs(px[i] - 128) + Math.abs(px[i + 1] - 128) + Math.abs(px[i + 2] - 128) > 12) drawn++;
        }
        return [c.width, c.height, drawn];""")
    assert (width, height) == (240, 200)
    assert drawn > 0.02 * width * height

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    shot = tmp_path / "web_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
