"""A real headless Chromium (Debian's `chromium` and `chromium-driver`, from maint-scripts/setup.sh) driven by
Selenium through the system driver: never a browser or driver download (a bare `webdriver.Chrome()` would run
Selenium Manager, which downloads). Screenshots land in test-artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_daemon_process import onboard
from tests.procs import DmsProcess, wait_for

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--window-size=1280,1100", "--disable-dev-shm-usage"]  # fmt: skip


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Where the browser saves what the page downloads (Chromium's download folder, set by its prefs)."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    # Headless Chromium saves downloads only when told where (the prefs alone are not always enough).
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


def console(driver: WebDriver) -> str:
    assert isinstance(driver, webdriver.Chrome)  # the browser log is Chrome's
    get_log = cast(Callable[[str], list[dict[str, Any]]], driver.get_log)  # selenium leaves it untyped
    return "\n".join(str(e.get("message")) for e in get_log("browser"))


def screenshot(driver: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait(driver: WebDriver, check: Callable[[WebDriver], Any], what: str, timeout: float = 20) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception as exc:
        screenshot(driver, "failed-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        raise AssertionError(f"not within {timeout} s: {what}\nbrowser console:\n{console(driver)}") from exc


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    """A compute provider and a service provider that knows it (as tests/e2e's pair), shared by the browser
    tests: each test makes its own jobs, and starting two daemons costs seconds on 2 cores."""
    root = tmp_path_factory.mktemp("pair")
    cp = DmsProcess(root, "cp")
    sp: DmsProcess | None = None
    try:
        cp.start()
        onboard(cp, 0.5)
        me = cp.get("/api/v1/peers/self")
        sp = DmsProcess(root, "sp", p2p={"bootstrap_peers": [me["addrs"][0]]}).start()
        onboard(sp, 0.2)  # a requester needs its channel

        def sees_cp() -> bool:
            assert sp is not None
            raw = sp.get("/api/v1/peers/dht")
            peers = raw if isinstance(raw, list) else raw["peers"]
            return any(me["peer_id"] in (p if isinstance(p, str) else p.get("peer_id", "")) for p in peers)

        wait_for(sees_cp, 15, "the SP sees the CP")
        yield cp, sp
    finally:
        for d in (sp, cp):
            if d is not None:
                d.stop()
