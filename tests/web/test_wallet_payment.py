"""Paying from the page with a browser wallet: headless Chromium has none, so the test injects a small
EIP-1193 provider (`window.ethereum.request`) whose calls the test answers from anvil with one of its dev
accounts. The page encodes the escrow's deposit itself; the daemons verify it on chain as for any client."""

from __future__ import annotations

import time
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.test_escrow import RELEASED, Market, market, settled  # noqa: F401  (market: the fixture)
from tests.payments.anvil import CHAIN_ID
from tests.web.conftest import screenshot, wait
from tests.web.page import submit_job_by_keyboard, text_of

PROVIDER = """
window.__rpc = {queue: [], pending: {}, n: 0};
window.ethereum = {isTest: true, request: ({method, params}) => new Promise((resolve, reject) => {
  const id = ++window.__rpc.n;
  window.__rpc.pending[id] = {resolve, reject};
  window.__rpc.queue.push({id, method, params: params || []});
})};
"""


def answer(mk: Market, method: str, params: list[Any]) -> Any:
    if method in ("eth_requestAccounts", "eth_accounts"):
        return [mk.dashboard]
    if method == "eth_chainId":
        return hex(CHAIN_ID)
    if method == "eth_sendTransaction":
        tx = params[0]
        assert tx["from"] == mk.dashboard and tx["to"] == mk.escrow.address, tx
        sent = mk.w3.eth.send_transaction(
            {"from": tx["from"], "to": tx["to"], "value": int(tx["value"], 16), "data": tx["data"]}  # type: ignore[typeddict-item]
        )
        return "0x" + bytes(sent).hex()
    raise AssertionError(f"the page asked the wallet for {method}")


def serve_wallet_until(browser: WebDriver, mk: Market, done: Any, timeout: float) -> list[str]:
    """Answer the page's wallet calls until `done()`; the methods it called, in order."""
    called: list[str] = []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done within {timeout} s; wallet calls: {called}"
        for call in browser.execute_script("return window.__rpc.queue.splice(0);"):
            called.append(call["method"])
            result = answer(mk, call["method"], call["params"])
            browser.execute_script("window.__rpc.pending[arguments[0]].resolve(arguments[1]);", call["id"], result)
        time.sleep(0.1)
    return called


def test_pay_the_escrow_with_the_browser_wallet(browser: WebDriver, market: Market) -> None:  # noqa: F811
    mk = market
    browser.get(mk.sp.url + "/#sp")
    wait(browser, lambda b: b.find_elements(By.ID, "job-form"), "the job form")
    browser.execute_script(PROVIDER)
    job_id = submit_job_by_keyboard(browser, 'sh -c "echo paid by the wallet"', pay=False)
    assert "escrow" in text_of(browser, "quote")
    assert browser.find_element(By.ID, "pay-btn").text == "Pay with wallet and run"
    browser.find_element(By.ID, "pay-btn").click()
    called = serve_wallet_until(browser, mk, lambda: text_of(browser, "job-state") == "completed", 60)
    assert called == ["eth_requestAccounts", "eth_chainId", "eth_sendTransaction"]
    assert "paid by the wallet" in text_of(browser, "job-log")
    wait(browser, lambda b: settled(mk, job_id, "release"), "the SP releases the escrow", timeout=30)
    assert mk.state(job_id) == RELEASED
    browser.find_element(By.ID, "tab-cp").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#transactions tbody tr"), "the settlements table")
    screenshot(browser, "compute-provider-settlements")
