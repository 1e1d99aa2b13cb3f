"""report.html in a real browser: Debian's chromium, headless, driven by selenium. Every image
loads, the browser logs no error, nothing outside the file is requested, and a screenshot is kept.
A 1-cell and an 80-cell study (synthetic rows, no training) both render.

The set-up installs chromium and chromium-driver with apt-get where they are missing and it runs
as root; in CI (CI=true) a browser that cannot be had fails the test instead of skipping it.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from synthetic_study import write_study

from dropcli.report import build_report

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PACKAGES = ("chromium", "chromium-driver")


def _missing(why: str):
    (pytest.fail if IN_CI else pytest.skip)(why)


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True, timeout=1800).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)  # stale lists: fetch, retry
        subprocess.run(install, env=env, capture_output=True, timeout=1800)


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), installed with apt-get when missing and possible."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found) and shutil.which("apt-get") and os.geteuid() == 0:
        _apt_install()
        found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        _missing("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver, as root)")
    return found


@pytest.fixture(scope="module")
def driver():
    chromium, chromedriver = browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager downloads nothing: the browser and driver are Debian's
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--disable-background-networking", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield browser
    browser.quit()


def one_cell(folder: Path) -> Path:
    return write_study(folder, keeps=(0.7,), seeds=(777,))


def eighty_cells(folder: Path) -> Path:
    return write_study(folder, keeps=(0.5, 0.7, 0.9, 1.0), input_keeps=(0.8, 1.0), train_sizes=(1000, 10_000),
                       seeds=(777, 778, 779, 780, 781))


@pytest.mark.parametrize("make, cells, figures", [(one_cell, 1, 2), (eighty_cells, 80, 3)], ids=["1-cell", "80-cell"])
def test_report_renders_in_chromium_with_nothing_from_outside(driver, tmp_path, make, cells, figures):
    folder = make(tmp_path / "study")
    build_report(folder)
    page = (folder / "report.html").resolve()
    url = page.as_uri()
    driver.get_log("performance"), driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    assert driver.title == f"Study: {folder}"
    images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == figures and all(done and w > 0 and h > 0 for done, w, h in images), images
    text = driver.execute_script("return document.body.innerText")
    assert f"cells\t{cells} (" in text and "Question." in text
    rows = driver.execute_script("return document.querySelectorAll('table')[1].querySelectorAll('tbody tr').length")
    assert rows == max(1, cells // 5)  # one summary row per configuration
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    requested = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert url in requested and all(u == url or u.startswith("data:") for u in requested), requested
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("data:") for name in resources), resources
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 16_000))
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
