"""The dashboard in a real headless Chromium against real daemons: onboarding through the form, a busybox
job from quote to completed with its log lines, cancelling a long job, the network view, accessibility."""

from __future__ import annotations

import hashlib
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import PAYOUT
from tests.procs import DmsProcess, wait_for
from tests.web.conftest import console, screenshot, wait
from tests.web.page import by_id, fill, loaded_from_elsewhere, submit_job_by_keyboard, text_of, unlabelled_inputs


def test_onboard_through_the_form(browser: WebDriver, dms_process: Callable[..., DmsProcess]) -> None:
    d = dms_process().start()
    machine = d.get("/api/v1/onboarding/provisioned")
    browser.get(d.url + "/#cp")
    wait(browser, lambda b: b.find_elements(By.ID, "onboard-form"), "the onboarding form")
    assert unlabelled_inputs(browser) == []
    assert loaded_from_elsewhere(browser, d.url) == []

    # A reservation over the machine: the rule's error beside the CPU field, and nothing changes.
    fill(by_id(browser, "ob-cpu"), str(machine["cpu"] * 10))
    fill(by_id(browser, "ob-payment"), PAYOUT)
    by_id(browser, "onboard-btn").click()
    error = wait(browser, lambda b: b.find_elements(By.ID, "ob-cpu-error"), "the CPU field's error")[0]
    assert "MHz" in error.text, error.text
    assert by_id(browser, "ob-cpu").get_attribute("aria-invalid") == "true"
    assert "ob-cpu-error" in (by_id(browser, "ob-cpu").get_attribute("aria-describedby") or "")
    screenshot(browser, "onboarding-error")
    assert d.get("/api/v1/onboarding/status")["onboarded"] is False

    # A bad payout address: its error beside its field.
    fill(by_id(browser, "ob-cpu"), str(machine["cpu"] // 2))
    fill(by_id(browser, "ob-payment"), "0x1234")
    by_id(browser, "onboard-btn").click()
    wait(browser, lambda b: b.find_elements(By.ID, "ob-payment-error"), "the payout field's error")
    assert not browser.find_elements(By.ID, "ob-cpu-error")
    assert d.get("/api/v1/onboarding/status")["onboarded"] is False

    fill(by_id(browser, "ob-payment"), PAYOUT)
    by_id(browser, "onboard-btn").click()
    wait(browser, lambda b: text_of(b, "cp-status").startswith("Onboarded"), "onboarded")
    status = d.get("/api/v1/onboarding/status")
    assert status["onboarded"] is True and status["reserved"]["cpu"] == machine["cpu"] // 2
    wait(browser, lambda b: b.find_elements(By.ID, "g-cpu-res"), "the gauges")
    screenshot(browser, "compute-provider")

    # Resource changes: over the machine, the error beside the field and nothing changes; then a real change,
    # which the reservation gauge shows.
    fill(by_id(browser, "rc-cpu"), str(machine["cpu"] * 10))
    by_id(browser, "resource-btn").click()
    error = wait(browser, lambda b: b.find_elements(By.ID, "rc-cpu-error"), "the reservation's CPU error")[0]
    assert "MHz" in error.text, error.text
    assert d.get("/api/v1/onboarding/status")["reserved"]["cpu"] == machine["cpu"] // 2
    smaller = machine["cpu"] // 3
    fill(by_id(browser, "rc-cpu"), str(smaller))
    by_id(browser, "resource-btn").click()
    wait(browser, lambda b: by_id(b, "g-cpu-res").get_attribute("value") == str(smaller), "the new reservation")
    assert not browser.find_elements(By.ID, "rc-cpu-error")
    assert d.get("/api/v1/onboarding/status")["reserved"]["cpu"] == smaller

    by_id(browser, "online-btn").click()
    wait(browser, lambda b: text_of(b, "cp-online") == "Offline", "offline")
    device = d.get("/api/v1/device/status")
    assert device.get("online", device.get("is_available")) is False

    by_id(browser, "offboard-btn").click()
    wait(browser, lambda b: text_of(b, "cp-status") == "Not onboarded", "offboarded")
    assert d.get("/api/v1/onboarding/status")["onboarded"] is False
    assert "SEVERE" not in console(browser), console(browser)


def test_a_busybox_job_from_the_form_to_completed(browser: WebDriver, pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    browser.get(sp.url + "/#sp")
    job_id = submit_job_by_keyboard(browser, 'sh -c "echo first-line; echo second-line >&2; echo $GREETING"')
    wait(browser, lambda b: text_of(b, "job-state") == "completed", "the job completes", timeout=60)
    log = text_of(browser, "job-log")
    for line in ("first-line", "second-line", "hello from the env"):
        assert line in log, log
    assert browser.find_element(By.CSS_SELECTOR, "#job-log .stderr").text.strip() == "second-line"
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "completed"
    row = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"] td.state'), "row")[0]
    wait(browser, lambda b: row.text.startswith("completed"), "the job list shows it completed")
    screenshot(browser, "service-provider")

    # The network view: the CP in the peer table with its capacity, an RTT chart from the page's pings,
    # and the jobs chart.
    by_id(browser, "tab-net").click()
    cp_id = cp.get("/api/v1/peers/self")["peer_id"]
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'#peers td[title="{cp_id}"]'), "the CP in the table")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#rtt-chart canvas"), "the RTT chart")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#jobs-chart canvas"), "the jobs chart")
    row_text = browser.find_element(By.CSS_SELECTOR, f'#peers td[title="{cp_id}"]').find_element(By.XPATH, "..").text
    assert "docker" in row_text, row_text
    wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'#peers td[title="{cp_id}"]')
         .find_element(By.XPATH, "..").find_elements(By.TAG_NAME, "td")[-1].text != "", "an RTT sample")  # fmt: skip
    assert unlabelled_inputs(browser) == []
    assert loaded_from_elsewhere(browser, sp.url) == []

    def rtt_points(b: WebDriver) -> int:
        return int(b.find_element(By.ID, "rtt-chart").get_attribute("data-points") or 0)

    wait(browser, lambda b: rtt_points(b) >= 3, "three RTT samples on the chart")
    screenshot(browser, "network")


def test_cancel_a_long_job(browser: WebDriver, pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    browser.get(sp.url + "/#sp")
    job_id = submit_job_by_keyboard(browser, 'sh -c "echo started; sleep 300"', duration_s=600)
    wait(browser, lambda b: "started" in text_of(b, "job-log"), "the job's first line", timeout=60)
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "running"

    # The provider's page while it runs: one running job, and the CPU it holds on the in-use gauge.
    browser.get(cp.url + "/#cp")
    wait(browser, lambda b: text_of(b, "cp-running") == "1", "the running job on the CP's page")
    wait(browser, lambda b: by_id(b, "g-cpu-use").get_attribute("value") == "500", "the job's 500 MHz in use")
    # and its peers with their capacity: the SP, onboarded with a share of its machine
    sp_id = sp.get("/api/v1/peers/self")["peer_id"]
    peer = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'#cp-peers td[title="{sp_id}"]'), "the SP")[0]
    cells = [td.text for td in peer.find_element(By.XPATH, "..").find_elements(By.TAG_NAME, "td")]
    assert int(cells[2]) > 0 and "docker" in cells[6], cells  # free CPU (MHz), executors
    screenshot(browser, "compute-provider-running")
    browser.get(sp.url + "/#sp")
    cancel = f'tr[data-job-id="{job_id}"] button.cancel'
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, cancel), "the job's cancel button")[0].click()
    wait(browser, lambda b: text_of(b, "job-state") == "cancelled" or b.find_elements(
        By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"] td.state.cancelled'), "cancelled", timeout=30)  # fmt: skip
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "cancelled"
    screenshot(browser, "cancelled")


def test_with_a_token_the_page_asks_for_it_once(
    browser: WebDriver, dms_process: Callable[..., DmsProcess], downloads: Path, tmp_path: Path
) -> None:
    token = "a-token-for-the-browser-test"
    d = dms_process(rest={"api_token": token})
    d.proc = d.spawn()
    wait_for(lambda: d.log_path.exists() and "ready on" in d.log(), 30, "the daemon is ready")
    browser.get(d.url + "/#cp")
    wait(browser, lambda b: b.find_elements(By.ID, "login-form"), "the login form")
    assert unlabelled_inputs(browser) == []
    field = by_id(browser, "login-token")
    field.send_keys("not-the-right-token")
    field.send_keys(Keys.ENTER)
    wait(browser, lambda b: b.find_elements(By.ID, "login-token-error"), "the wrong token's error")
    fill(by_id(browser, "login-token"), token)
    by_id(browser, "login-token").send_keys(Keys.ENTER)
    wait(browser, lambda b: text_of(b, "cp-status") == "Not onboarded", "the dashboard, signed in")
    wait(browser, lambda b: text_of(b, "conn") == "live: open", "the websocket, through the cookie")
    # The token sits in an HttpOnly cookie: the page's scripts cannot read it.
    assert token not in browser.execute_script("return document.cookie;")
    assert any(c["name"] == "dms_token" and c["httpOnly"] for c in browser.get_cookies())

    # Files cross the boundary on the cookie too: the job form's upload (a same-origin POST), and a download
    # link as the page's outputs and checkpoint links are (a same-origin GET: a link sends no header, the
    # cookie goes with it). Without the token the same GET is refused.
    data = b"through the boundary\n"
    (tmp_path / "note.txt").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    by_id(browser, "tab-sp").click()
    wait(browser, lambda b: b.find_elements(By.ID, "job-input-file"), "the job form")
    by_id(browser, "job-input-file").send_keys(str(tmp_path / "note.txt"))
    wait(browser, lambda b: f"sha256 {sha[:6]}" in text_of(b, "in-0-file"), "the upload's hash")
    with pytest.raises(urllib.error.HTTPError) as refused:
        d.get(f"/api/v1/artifacts/{sha}")
    assert refused.value.code == 401
    browser.execute_script(
        "const a = document.createElement('a'); a.href = arguments[0]; a.download = 'note.txt';"
        "document.body.append(a); a.click(); a.remove();", f"/api/v1/artifacts/{sha}",
    )  # fmt: skip
    saved = downloads / "note.txt"
    wait(browser, lambda _: saved.exists() and not list(downloads.glob("*.crdownload")), "the download")
    assert saved.read_bytes() == data


def test_the_page_follows_a_job_across_a_restart_of_its_daemon(
    browser: WebDriver, pair: tuple[DmsProcess, DmsProcess]
) -> None:
    _, sp = pair
    browser.get(sp.url + "/#sp")
    job_id = submit_job_by_keyboard(browser, 'sh -c "for i in $(seq 1 10); do echo tick-$i; sleep 1; done"', 120)
    wait(browser, lambda b: "tick-2" in text_of(b, "job-log"), "the first ticks", timeout=60)
    sp.kill9()
    wait(browser, lambda b: text_of(b, "conn") == "live: closed", "the page sees the drop")
    sp.start()
    wait(browser, lambda b: text_of(b, "job-state") == "completed", "the job completes after the restart", 90)

    def ticks(b: WebDriver) -> list[str]:
        return [line for line in text_of(b, "job-log").splitlines() if line.startswith("tick-")]

    # the state may come from the page's REST poll before its websocket is back and has replayed the frames
    wait(browser, lambda b: text_of(b, "conn") == "live: open" and len(ticks(b)) >= 10, "the live log is back")
    assert ticks(browser) == [f"tick-{i}" for i in range(1, 11)], ticks(browser)  # each line once, in order
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "completed"
