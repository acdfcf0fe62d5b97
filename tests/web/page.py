"""The dashboard's page as the browser tests drive it: finding, filling, the job form by keyboard."""

from __future__ import annotations

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.web.conftest import wait


def by_id(driver: WebDriver, id_: str) -> WebElement:
    return driver.find_element(By.ID, id_)


def text_of(driver: WebDriver, id_: str) -> str:
    found = driver.find_elements(By.ID, id_)
    return found[0].text if found else ""


def fill(el: WebElement, value: str) -> None:
    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(Keys.DELETE)
    el.send_keys(value)


def unlabelled_inputs(driver: WebDriver) -> list[str]:
    """Every input, select and textarea must have a label (a <label for>, a wrapping label or aria-label)."""
    return list(
        driver.execute_script(
            """return [...document.querySelectorAll('input, select, textarea')]
                .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label')
                        && !e.getAttribute('aria-labelledby'))
                .map(e => e.outerHTML);"""
        )
    )


def loaded_from_elsewhere(driver: WebDriver, origin: str) -> list[str]:
    """Resources the page loaded from anywhere but the daemon (a CDN would show here)."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    return [n for n in names if not n.startswith((origin + "/", origin.replace("http", "ws") + "/"))]


def submit_job_by_keyboard(browser: WebDriver, command: str, duration_s: int = 60, pay: bool = True) -> str:
    """Fill the job form with the keyboard only (Tab between fields, Enter submits), get the quote, pay (the
    trust path) unless told not to; the job id."""
    wait(browser, lambda b: b.find_elements(By.ID, "job-form"), "the job form")
    assert unlabelled_inputs(browser) == []
    image = by_id(browser, "job-image")
    image.click()
    keys = ActionChains(browser)  # keys to the focused element, as a person types (a file input takes Tab too)
    keys.key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "job-kind-docker"  # the kind, a radio group
    keys.send_keys(Keys.TAB).perform()
    order = ["job-image", "job-command", "job-cpu", "job-cores", "job-memory", "job-duration", "job-price",
             "job-env", "job-target", "job-input-file", "job-input-url", "job-checkpoint", "job-resume"]  # fmt: skip
    values = {"job-image": "dms-test/busybox:1", "job-command": command, "job-duration": str(duration_s),
              "job-env": "GREETING=hello from the env"}  # fmt: skip
    for id_ in order:
        focused = browser.switch_to.active_element
        assert focused.get_attribute("id") == id_, (id_, focused.get_attribute("outerHTML"))
        if id_ in values:
            fill(focused, values[id_])
        keys.send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "quote-btn"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    job_id = wait(browser, lambda b: text_of(b, "quote-job"), "the quote")
    if pay:
        by_id(browser, "pay-btn").send_keys(Keys.ENTER)
    return str(job_id)
