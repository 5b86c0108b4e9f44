"""One real browser: Debian's chromium, headless, through playwright (never `playwright install`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from assistant.data.audio import write_recording
from tests.live_server import free_port
from tests.test_reports import pdf_text

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app.py"
SCREENSHOT = ROOT / "build" / "screenshots" / "streamlit_analysis.png"


@pytest.fixture()
def streamlit_url(tmp_path):
    port = free_port()
    env = {**os.environ, "MURMURSCOPE_CHAT_BASE_URL": ""}
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium absent (apt-get install -y chromium)")
def test_upload_and_see_results(streamlit_url, synth_recordings, tmp_path):
    from playwright.sync_api import sync_playwright

    wav = write_recording(tmp_path / "9001_MV.wav", synth_recordings[3])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(streamlit_url)
        page.locator("[data-testid=stMain] input[type=file]").set_input_files(str(wav))
        page.get_by_text("Site of 9001_MV.wav").wait_for(timeout=30_000)
        page.get_by_role("button", name="Analyze").click()
        page.get_by_text("Murmur:", exact=False).first.wait_for(timeout=120_000)
        page.get_by_text("signal quality").first.wait_for()
        # Scroll by the page, not to an element: Streamlit may replace an image element while it settles.
        page.mouse.wheel(0, 4000)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".filter(i => i.complete && i.naturalWidth > 0).length >= 2", timeout=30_000)
        page.get_by_text("heart rate", exact=False).first.wait_for()
        # Without a chat model the reply opens with the direct answer to the question asked.
        page.get_by_placeholder("Ask about these recordings").fill("What is the heart rate?")
        page.keyboard.press("Enter")
        reply = page.locator("[data-testid=stChatMessage]").nth(1)
        reply.get_by_text(re.compile(r"^Heart rate: (\d+ bpm|not determinable)")).wait_for(timeout=120_000)
        assert re.match(r"Heart rate: (\d+ bpm|not determinable)", reply.locator("p").first.inner_text())
        reply.get_by_text("Full guidance passages", exact=False).wait_for()
        assert "Traceback" not in page.content()
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        # The report buttons make their file on click (a deferred download through the real server).
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="Download PDF report").click()
        assert download.value.suggested_filename == "murmurscope_anonymous.pdf"
        pdf = Path(download.value.path()).read_bytes()
        browser.close()
    assert SCREENSHOT.stat().st_size > 50_000
    assert pdf[:5] == b"%PDF-" and "9001" not in pdf_text(pdf)
