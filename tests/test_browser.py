"""The review page in a real browser: Debian's headless Chromium driven by Selenium.

Selenium is pointed at /usr/bin/chromedriver, so Selenium Manager never downloads a
driver or a browser. Skipped outside CI when no browser is installed; on CI
(``CI=true``, where ``.ci/run`` installs ``chromium`` and ``chromium-driver``) it fails.

With ``BLURFACE_WRITE_DOCS=1`` the screenshot of the sample is also written to
``docs/review_page.png`` (the README's picture).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from blurface.embedders import make_embedder
from blurface.pipeline import make_plan
from blurface.plan import Plan
from blurface.server import ReviewSession, start, stop

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what}: CI must install it (.ci/run: apt-get install chromium chromium-driver)")
    pytest.skip(f"{what}; install chromium and chromium-driver to run the browser test")


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if chromium is None or not os.path.exists(driver_path):
        _missing("no chromium or chromedriver found")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,760",
                "--disable-gpu", "--mute-audio", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def _colour_pixels(image: np.ndarray, bgr: tuple[int, int, int], tol: int = 40) -> int:
    return int((np.abs(image.astype(int) - np.array(bgr)).max(axis=2) <= tol).sum())


def test_browser_toggle_save_and_screenshot(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    video = tmp_path / "astronaut.mp4"
    shutil.copy(ROOT / "samples" / "astronaut.mp4", video)
    plan = make_plan(video, targets=[ROOT / "samples" / "astronaut_target.jpg"])
    assert plan.track(0).masked
    saved = tmp_path / "astronaut.plan.json"
    session = ReviewSession(plan, video, save_path=saved, output=tmp_path / "out.mp4",
                            people_dir=tmp_path / "people", embedder=make_embedder())
    session.prepare()
    server, thread = start(session)
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(server.url)
        wait.until(lambda d: d.find_elements(By.ID, "track-0"))
        # The proxy decodes (Debian's Chromium plays H.264) and the overlay has its size.
        wait.until(lambda d: d.execute_script("return document.getElementById('v').readyState >= 2"))
        assert browser.execute_script("return document.getElementById('v').videoWidth") == 640
        assert "token" not in browser.current_url, "the token stays out of the address bar"
        browser.find_element(By.ID, "track-0").click()  # selects the track and seeks to it
        browser.find_element(By.TAG_NAME, "body").send_keys("\ue014\ue014")  # two right arrows: two frames on
        wait.until(lambda d: d.execute_script("return document.getElementById('clock').textContent").endswith("frame 2"))
        shot = tmp_path / "review_page.png"
        browser.save_screenshot(str(shot))
        image = cv2.imread(str(shot))
        assert image is not None and image.shape[1] >= 1000
        red = _colour_pixels(image, (0x33, 0x33, 0xEE))
        assert red > 400, "the masked track's red box and timeline bar are drawn"
        if os.environ.get("BLURFACE_WRITE_DOCS") == "1":
            shutil.copy(shot, ROOT / "docs" / "review_page.png")

        browser.find_element(By.CSS_SELECTOR, "#why").send_keys("consent given")
        browser.find_element(By.CSS_SELECTOR, "#track-0 .toggle").click()
        # Read in the page: the list is rebuilt after each change, so held elements go stale.
        wait.until(lambda d: d.execute_script("const e = document.querySelector('#track-0 .state'); "
                                              "return e && e.textContent") == "kept")
        browser.find_element(By.ID, "save").click()
        wait.until(lambda d: "saved" in d.execute_script("return document.getElementById('msg').textContent"))
        reviewed = Plan.load(saved)
        assert not reviewed.track(0).masked
        assert [(e["action"], e["track"], e["reason"]) for e in reviewed.review] == [
            ("keep", 0, "consent given"), ("save", None, "")]
        after = tmp_path / "after.png"
        browser.save_screenshot(str(after))
        image = cv2.imread(str(after))
        assert _colour_pixels(image, (0x33, 0xCC, 0x33)) > 400, "the kept track is drawn green"
    finally:
        stop(server, thread)


# --------------------------------------------------------------------------- a hostile plan

# The payload: run as page script, it reads the token, unmasks track 0 and says so.
UNMASK = ("window.pwned=1;fetch('/api/track',{method:'POST',headers:{'X-Blurface-Token':TOKEN,"
          "'Content-Type':'application/json'},body:JSON.stringify({id:0,masked:false})})")
HOSTILE_DECISION = f'<img src=x onerror="{UNMASK}">'


def _hostile_review(tmp_path: Path):
    """A review of a generated clip whose plan carries markup in every text field that reaches the page.

    The identity and the reasons are free text, so a valid plan may hold markup there; they
    went through ``Plan.load`` from a file. The decision is an enumeration that ``Plan.load``
    refuses (tests/test_plan.py): it is set in memory afterwards, as if a plan had got past
    the checks, to show that the page itself never runs what it shows.
    """
    from blurface import media
    from blurface.types import Track
    from people import make_people_clip, package_heads

    # The file name reaches the page too ("name" in the header).
    clip = make_people_clip(tmp_path / '<img src=x onerror="window.pwned=2">.mp4', package_heads(),
                            n_frames=12, width=384, height=216, face_px=56)
    info = media.probe(clip.path)
    tracks = []
    for tid, who in enumerate(clip.names):
        boxes = clip.boxes_of(who)
        tracks.append(Track(
            id=tid, frames=np.arange(len(boxes)), xyxy=np.array(boxes, np.float32), source=np.zeros(len(boxes)),
            identity=f'<img src=x onerror="window.pwned=3">{who}', distance=0.3, decision="target",
            masked=True, reason=f'<img src=x onerror="{UNMASK}"><script>window.pwned=4</script>',
        ))
    path = tmp_path / "hostile.plan.json"
    Plan(video=info, mode="target", settings={}, tracks=tracks, times=media.frame_times(info)).save(path)
    plan = Plan.load(path)
    plan.tracks[0].decision = HOSTILE_DECISION  # type: ignore[assignment] - past the checks, on purpose
    session = ReviewSession(plan, clip.path, save_path=path, output=tmp_path / "out.mp4",
                            people_dir=tmp_path / "people")
    session.prepare()
    return session


def test_browser_markup_in_a_plan_is_shown_as_text_and_never_runs(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    session = _hostile_review(tmp_path)
    server, thread = start(session)
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(server.url)
        wait.until(lambda d: d.find_elements(By.ID, "track-1"))
        wait.until(lambda d: d.execute_script("return document.getElementById('v').readyState >= 2"))
        # Every image the page made has loaded or failed: an <img src=x> of a payload would have
        # fired its onerror by now. Then one more round trip, after any request a payload started.
        wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
        browser.execute_async_script("fetch('/api/render', {headers: {'X-Blurface-Token': TOKEN}})"
                                     ".then(() => arguments[0]())")
        assert browser.execute_script("return window.pwned") is None, "a payload ran"
        # Nothing reached the server: the target is still masked and the review log is empty.
        assert session.plan.track(0).masked and session.plan.track(1).masked
        assert session.plan.review == []
        assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"], script:not([src])').length") == 0
        text = browser.execute_script(
            "const q = s => document.querySelector(s).textContent;"
            "return [q('#track-0 .decision'), q('#track-1 .who'), q('#track-0 .reason'), q('#name')]")
        assert text[0] == HOSTILE_DECISION, "the decision is shown as text"
        # Track 1 matched, so it is named: by its (hostile) identity, as text.
        assert text[1] == session.plan.track(1).identity and text[2] == session.plan.tracks[0].reason
        assert text[3].startswith('<img src=x onerror="window.pwned=2">.mp4')
        # The thumbnails (with the token in their query) loaded: there is no cookie to carry it.
        assert browser.execute_script(
            "return [...document.querySelectorAll('#tracks img')].every(i => i.naturalWidth > 0)")
        assert browser.get_cookies() == [], "no cookie: one for 127.0.0.1 would go to every port"

        # And markup that does get into the page cannot run: the policy forbids inline handlers.
        blocked = browser.execute_async_script("""
            const done = arguments[0], seen = [];
            document.addEventListener('securitypolicyviolation', e => seen.push(e.effectiveDirective));
            document.body.insertAdjacentHTML('beforeend', '<img id=probe src=x onerror="window.pwned=5">');
            document.getElementById('probe').addEventListener('error', () => setTimeout(() => done(seen), 50));
        """)
        assert browser.execute_script("return window.pwned") is None, "the policy let an inline handler run"
        assert any(d.startswith("script-src") for d in blocked), blocked
    finally:
        stop(server, thread)
