"""The studio in a real browser: Playwright's Python package driving Debian's chromium
(no browser download) through the page on the demo clip and the tiny net: open (stage 1
with its progress), scrub, change the layer, dream a frame (its octaves as they come), try a
stretch and read its flicker, save the TOML (stage 2 with it writes the preview's bytes),
render 10 frames with progress, play the result with its sound; then Ctrl-C.

With STUDIO_SCREENSHOTS=FOLDER the screenshots of docs/studio.md are written there
(`make studio-screenshots`)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, demo_photo

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DREAMER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _browser_or_skip():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    pytest.importorskip("starlette", reason="the studio's extra is not installed (make venv-studio)")
    return pytest.importorskip("playwright.sync_api",
                               reason="Playwright's Python package is not installed "
                                      "(make venv-studio)")


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "dreamer.cli.dreamvideo", "studio", *args],
                            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"studio: (http://\S+\?token=\S+)", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the studio did not start:\n{log.read_text()}")


def test_the_studio_in_a_browser(tmp_path, tiny_model):
    sync_api = _browser_or_skip()
    from dreamer.cli.demo import build_clip

    shots = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    clip = build_clip(demo_photo(), tmp_path / "hopper.mp4", 2.0, 12, (192, 144))
    log = tmp_path / "studio.log"
    proc, url = _start([str(clip), "--port", "0", "-t", str(tiny_model), "--width", "160",
                        "--no-browser", "--no-first-look"], log)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            _walk(page, tmp_path, shots)
            assert not errors, errors
            browser.close()
        # without its token the same address is refused
        import urllib.error
        import urllib.request
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url.split("?")[0] + "api/state")
        assert refused.value.code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "studio: stopped" in text and "Traceback" not in text


def _walk(page, tmp_path: Path, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto(_url(page, tmp_path))
    # open: stage 1 cuts the clip (its progress shown), then the film
    expect(page.locator("#main")).to_be_visible(timeout=120_000)
    expect(page.locator("#frame-count")).to_have_text("24")
    assert page.locator("#thumbs img").count() == 16
    # scrub: drag the scrubber to frame 6, then a thumbnail, then back with the arrow key
    page.locator("#scrubber").fill("6")
    expect(page.locator("#frame-number")).to_have_text("6")
    page.locator("#thumbs img").nth(10).click()  # frame 16
    expect(page.locator("#frame-number")).to_have_text("16")
    page.locator("#scrubber").fill("6")
    expect(page.locator("#frame-number")).to_have_text("6")
    # the layer: the picker lists the net's layers
    page.wait_for_function("document.querySelectorAll('#layer-select option').length > 3")
    page.select_option("#layer-select", "inception_4d/output")
    expect(page.locator("#f-layers")).to_have_value("inception_4d/output")
    page.fill("#f-iter_n", "6")
    page.fill("#f-zoom", "1:(1), 24:(1.03)")
    expect(page.locator("#curve-zoom svg")).to_be_visible()
    # dream this frame: each octave appears, then the dream beside the raw frame
    page.click("#dream-btn")
    expect(page.locator("#dream-status")).to_contain_text("done in", timeout=120_000)
    assert page.locator("#octaves img").count() == 4
    expect(page.locator("#dream-caption")).to_contain_text("frame 6 · inception_4d/output")
    preview_src = page.locator("#dream-img").get_attribute("src")
    preview = page.request.get(preview_src).body()
    assert preview.startswith(b"\x89PNG")
    expect(page.locator("#history figure")).to_have_count(1)
    page.screenshot(path=str(shots / "studio-dream.jpg"), type="jpeg", quality=60)
    # try a stretch: played as a loop, with its flicker
    page.fill("#stretch-n", "5")
    page.click("#stretch-btn")
    expect(page.locator("#flicker-added")).to_be_visible(timeout=120_000)
    added = float(page.locator("#flicker-added").inner_text())
    strength = float(page.locator("#flicker-strength").inner_text())
    assert strength > 0 and abs(added) < 255
    expect(page.locator("#stretch-caption")).to_contain_text("5 frames as a loop")
    page.locator("#stretch-panel").screenshot(path=str(shots / "studio-stretch.jpg"),
                                               type="jpeg", quality=70)
    # save: the TOML next to the film, and the command lines
    page.click("#save-btn")
    expect(page.locator("#toml-path")).to_contain_text("hopper.toml")
    toml = Path(page.locator("#toml-path").inner_text())
    assert toml == tmp_path / "hopper.toml" and toml.is_file()
    assert "inception_4d/output" in toml.read_text()
    # stage 2 with it, at the preview's width, writes the very bytes the page showed
    out = tmp_path / "check"
    run = subprocess.run([sys.executable, str(ROOT / "2_dreaming_time.py"), "--params",
                          str(toml), "-i", str(tmp_path / "hopper_dream" / "frames"),
                          "-o", str(out), "-p", "160", "-sf", "6", "-ef", "6", "-v", "0"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (out / "00000006.png").read_bytes() == preview
    # render 10 frames: progress, then stage 3, then the video plays with its sound
    page.fill("#render-from", "1")
    page.fill("#render-to", "10")
    page.click("#render-btn")
    page.wait_for_function("+document.getElementById('render-progress').value >= 1",
                           timeout=120_000)
    expect(page.locator("#result-video")).to_be_visible(timeout=180_000)
    assert sorted(p.name for p in (tmp_path / "hopper_dream" / "dreamed").glob("0*.png")) == [
        f"{k:08d}.png" for k in range(1, 11)]
    assert (tmp_path / "hopper_dream.mp4").is_file()
    page.evaluate("() => { const v = document.getElementById('result-video'); "
                  "v.muted = false; return v.play(); }")
    page.wait_for_function("document.getElementById('result-video').currentTime > 0.3",
                           timeout=30_000)
    audio = page.evaluate("document.getElementById('result-video').webkitAudioDecodedByteCount")
    assert audio > 0, "the result plays without its sound"
    page.evaluate("document.getElementById('result-video').pause()")
    page.locator("#render-panel").screenshot(path=str(shots / "studio-render.jpg"),
                                              type="jpeg", quality=70)


def _url(page, tmp_path: Path) -> str:
    text = (tmp_path / "studio.log").read_text()
    return re.search(r"studio: (http://\S+\?token=\S+)", text).group(1)
