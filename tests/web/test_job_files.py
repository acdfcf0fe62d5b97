"""The job form's files in a real headless Chromium against real daemons: an uploaded input copied to
/outputs and downloaded back through the page's link, a WASM job from a module uploaded through the page,
and a checkpointed job resumed from its checkpoint 1 once it has ended."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import wasmtime
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.procs import DmsProcess
from tests.wasm_modules import PRINTER
from tests.web.conftest import screenshot, wait
from tests.web.page import by_id, fill, text_of, unlabelled_inputs


def pay(browser: WebDriver) -> str:
    """Pay the quote on the page (the trust path); its job's id."""
    job_id = str(wait(browser, lambda b: text_of(b, "quote-job"), "the quote"))
    by_id(browser, "pay-btn").click()
    wait(browser, lambda b: not b.find_elements(By.ID, "quote"), "the payment is sent")
    return job_id


def quote_and_pay(browser: WebDriver) -> str:
    """Ask for the quote of what the form holds and pay it; the new job's id."""
    by_id(browser, "quote-btn").click()
    return pay(browser)


def completed(browser: WebDriver, job_id: str, timeout: float = 60) -> None:
    wait(browser, lambda b: job_id[:6] in text_of(b, "live-title") and text_of(b, "job-state") == "completed",
         f"job {job_id} completes", timeout)  # fmt: skip


def test_an_uploaded_input_comes_back_in_the_downloaded_outputs(
    browser: WebDriver, pair: tuple[DmsProcess, DmsProcess], downloads: Path, tmp_path: Path
) -> None:
    _, sp = pair
    data = os.urandom(20_000) + b"\nthe end\n"
    source = tmp_path / "my data.bin"
    source.write_bytes(data)
    browser.get(sp.url + "/#sp")
    wait(browser, lambda b: b.find_elements(By.ID, "job-form"), "the job form")
    fill(by_id(browser, "job-command"), 'sh -c "cp /inputs/in/data.bin /outputs/copy.bin && echo copied"')
    by_id(browser, "job-input-file").send_keys(str(source))
    wait(browser, lambda b: "sha256" in text_of(b, "in-0-file"), "the upload's hash")
    assert by_id(browser, "in-0-path").get_attribute("value") == "my_data.bin"  # the file name, made a plain name
    fill(by_id(browser, "in-0-path"), "in/data.bin")

    # A URL with credentials is refused beside its own field, and no job is made.
    by_id(browser, "job-input-url").click()
    fill(by_id(browser, "in-1-url"), "https://user:secret@example.invalid/x")
    before = len(sp.get("/api/v1/run/jobs")["jobs"])
    by_id(browser, "quote-btn").click()
    error = wait(browser, lambda b: b.find_elements(By.ID, "in-1-url-error"), "the URL's error")[0]
    assert "credentials" in error.text and not error.text.startswith("Value error"), error.text
    assert by_id(browser, "in-1-url").get_attribute("aria-invalid") == "true"
    assert len(sp.get("/api/v1/run/jobs")["jobs"]) == before
    assert unlabelled_inputs(browser) == []
    screenshot(browser, "job-inputs")
    browser.find_element(By.CSS_SELECTOR, '[aria-label="remove input 2"]').click()

    job_id = quote_and_pay(browser)
    completed(browser, job_id)
    assert "copied" in text_of(browser, "job-log")
    link = wait(browser, lambda b: b.find_elements(By.ID, "outputs-link"), "the outputs link")[0]
    link.click()
    saved = downloads / f"{job_id}.tar"  # the name in the answer's Content-Disposition
    wait(browser, lambda _: saved.exists() and not list(downloads.glob("*.crdownload")), "the download", 20)
    with tarfile.open(saved) as tar:
        copy = tar.extractfile("copy.bin")
        assert copy is not None and copy.read() == data
    browser.execute_script("document.getElementById('outputs-link').scrollIntoView({block: 'center'});")
    screenshot(browser, "job-outputs")


def test_a_wasm_job_from_a_module_uploaded_by_the_page(
    browser: WebDriver, pair: tuple[DmsProcess, DmsProcess], tmp_path: Path
) -> None:
    _, sp = pair
    module = tmp_path / "printer.wasm"
    module.write_bytes(wasmtime.wat2wasm(PRINTER))
    sha = hashlib.sha256(module.read_bytes()).hexdigest()
    browser.get(sp.url + "/#sp")
    wait(browser, lambda b: b.find_elements(By.ID, "job-form"), "the job form")
    by_id(browser, "job-kind-wasm").click()
    assert not browser.find_elements(By.ID, "job-image") and not browser.find_elements(By.ID, "job-inputs")
    by_id(browser, "quote-btn").click()  # no module chosen yet: said beside the picker
    wait(browser, lambda b: b.find_elements(By.ID, "job-module-error"), "the missing module's error")
    by_id(browser, "job-module-file").send_keys(str(module))
    wait(browser, lambda b: by_id(b, "job-module").get_attribute("value") == sha, "the uploaded module, chosen")
    assert [m["name"] for m in sp.get("/api/v1/modules")["modules"] if m["sha256"] == sha] == ["printer"]
    # The same file again: its name is taken, so it is added under the name with a suffix, and chosen.
    by_id(browser, "job-module-file").send_keys(str(module))
    wait(browser, lambda b: "added printer-" in text_of(b, "job-module-status"), "the second entry")
    assert len([m for m in sp.get("/api/v1/modules")["modules"] if m["sha256"] == sha]) == 2
    assert by_id(browser, "job-module").get_attribute("value") == sha
    fill(by_id(browser, "job-args"), 'alpha "beta gamma"')
    fill(by_id(browser, "job-env"), "K=v")
    assert unlabelled_inputs(browser) == []

    job_id = quote_and_pay(browser)
    completed(browser, job_id)
    lines = text_of(browser, "job-log").splitlines()
    for line in ("alpha", "beta gamma", "K=v", "done"):
        assert line in lines, lines
    assert browser.find_element(By.CSS_SELECTOR, "#job-log .stderr").text.strip() == "done"
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"]')
    assert f"wasm {sha[:6]}" in row.text, row.text
    wait(browser, lambda _: "completed" in row.text, "the job list shows it completed")
    job = sp.get(f"/api/v1/run/jobs/{job_id}")
    assert job["executor"] == "wasm" and job["module"] == sha and job["state"] == "completed"
    screenshot(browser, "wasm-job")


COUNTER = (
    "i=$(cat /workspace/counter 2>/dev/null || echo 0); echo start $i; "
    "while [ $i -lt 30 ]; do i=$((i+1)); echo $i > /workspace/c.tmp; mv /workspace/c.tmp /workspace/counter; "
    "sleep 0.1; done; echo counted"
)


def counter_in(sp: DmsProcess, sha256: str) -> int:
    with urllib.request.urlopen(f"{sp.url}/api/v1/artifacts/{sha256}", timeout=10) as r:
        body = r.read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        f = tar.extractfile("counter")
        assert f is not None
        return int(f.read())


def test_checkpoints_and_a_resume_from_checkpoint_1(browser: WebDriver, pair: tuple[DmsProcess, DmsProcess]) -> None:
    _, sp = pair
    browser.get(sp.url + "/#sp")
    wait(browser, lambda b: b.find_elements(By.ID, "job-form"), "the job form")
    fill(by_id(browser, "job-command"), f"sh -c '{COUNTER}'")
    by_id(browser, "job-checkpoint").click()
    fill(by_id(browser, "job-cp-interval"), "1")
    by_id(browser, "job-resume").click()  # resume: on-failure, accepted by the daemon (nothing fails here)
    assert unlabelled_inputs(browser) == []
    job_id = quote_and_pay(browser)
    completed(browser, job_id)
    assert "start 0" in text_of(browser, "job-log")

    def listed(b: WebDriver) -> list[dict[str, Any]] | None:
        """The SP's checkpoints once the final one is recorded and the page lists each of them."""
        cps: list[dict[str, Any]] = sp.get(f"/api/v1/run/jobs/{job_id}/checkpoints")["checkpoints"]
        rows = [r.get_attribute("data-seq") for r in b.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")]
        every = [c["seq"] for c in cps] == list(range(1, len(cps) + 1))  # each is fetched in its own task
        return cps if cps and cps[-1]["final"] and every and rows == [str(c["seq"]) for c in cps] else None

    cps = wait(browser, listed, "every checkpoint, the final one last, in the page's list", 30)
    assert len(cps) >= 2 and "(final)" in text_of(browser, "checkpoints"), cps
    first = counter_in(sp, cps[0]["sha256"])
    assert 0 < first < 30, first
    browser.execute_script("document.getElementById('checkpoints').scrollIntoView({block: 'center'});")
    screenshot(browser, "checkpoints")

    wait(browser, lambda b: b.find_elements(By.ID, "resume-1"), "the resume button of checkpoint 1")[0].click()
    resumes = wait(browser, lambda b: text_of(b, "quote-resumes"), "the resume's quote")
    assert resumes.endswith("from checkpoint 1") and job_id[:6] in resumes, resumes
    again = pay(browser)
    assert again != job_id
    completed(browser, again)
    log = text_of(browser, "job-log")
    assert f"start {first}\n" in log + "\n" and "counted" in log, log  # went on from checkpoint 1's counter
