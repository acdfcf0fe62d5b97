"""Resume after a provider's loss, paid: anvil, two providers and an SP in escrow mode, a dashboard that pays.

The first provider is SIGKILLed mid-run; the dashboard gets a `job-resume-quote` frame with a new quote for
the remaining time under a new escrow job id, deposits it, and the job resumes on the second provider from
its checkpoint with the counter continuing; the first deposit is refunded, the second released. A resume
quote that nobody pays expires: the job fails saying so, and the lost run is refunded.
"""

from __future__ import annotations

import asyncio
import io
import math
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.types import Wei

from dms.payments.contract import escrow_job_id, escrow_job_id_hex, load_artifact, run_key
from tests.e2e.nodes import peer_ids
from tests.e2e.test_resume import COUNT, COUNTER, kill_after_checkpoints, resumable
from tests.payments.anvil import CHAIN_ID, Anvil, AnvilError, install
from tests.procs import DmsProcess, post, run_cli, wait_for

REFUNDED, RELEASED = 3, 2
NTX_PRICE, CPU_MHZ = 10**12, 300
QUOTE_TTL_S = 10
END = ("job-completed", "job-failed")
LONGER = 100
COUNTER_10S = COUNTER.replace(f"-lt {COUNT}", f"-lt {LONGER}")  # 10 s of counting


def price(duration_s: int) -> int:
    return math.ceil(NTX_PRICE * CPU_MHZ / 1000 * duration_s)


def spec(counter: str = COUNTER_10S) -> dict[str, Any]:
    return resumable(counter)  # CPU_MHZ is its cpu_mhz


class Paying:
    """The dashboard: deposits from an anvil dev account, reports it on the websocket."""

    def __init__(self, w3: Web3, escrow: Contract) -> None:
        self.w3, self.escrow = w3, escrow
        self.account = list(w3.eth.accounts)[1]

    def deposit(self, escrow_id: bytes, provider: str, arbiter: str, value: int) -> str:
        tx = self.escrow.functions.deposit(escrow_id, provider, arbiter).transact(
            {"from": self.account, "value": Wei(value)}
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=10)
        assert receipt["status"] == 1
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def state(self, key: str) -> int:
        return int(self.escrow.functions.state(escrow_job_id(key)).call())


async def send_status(ws: aiohttp.ClientWebSocketResponse, job_id: str, tx_hash: str) -> None:
    message = {"transaction_type": "fund", "transaction_status": "success", "tx_hash": tx_hash}
    await ws.send_json({"action": "send-status", "job_id": job_id, "message": message})


def settled(sp: DmsProcess, key: str, kind: str) -> bool:
    rows = sp.get("/api/v1/transactions")
    return any(t["job_id"] == key and t["kind"] == kind and t["state"] == "mined" for t in rows)


@dataclass
class PaidNetwork:
    pay: Paying
    cps: list[DmsProcess]
    ids: list[dict[str, Any]]
    """Each provider's `/peers/self`."""
    payouts: list[ChecksumAddress]
    sp: DmsProcess
    rpc_url: str


@contextmanager
def paid_network_on(make: Callable[..., DmsProcess], anvil_log: Path) -> Iterator[PaidNetwork]:
    """anvil with the escrow deployed, two providers and an SP in escrow mode (the SP's wallet funded for
    gas), connected. Raises AnvilError when anvil cannot be had. Also used by bench/resume.py."""
    with Anvil(install(), anvil_log) as anvil:
        w3 = Web3(HTTPProvider(anvil.url))
        deployer = w3.eth.accounts[0]
        art = load_artifact()
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.contract(abi=art.abi, bytecode=art.bytecode).constructor(3600).transact({"from": deployer})
        )
        assert receipt["contractAddress"] is not None
        escrow = w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)
        payment = {
            "mode": "escrow", "rpc_url": anvil.url, "chain_id": CHAIN_ID, "escrow_address": escrow.address,
            "required_confirmations": 1, "timeout_s": 10,
        }  # fmt: skip
        cps, payouts = [], []
        for i in (1, 2):
            cp = make(f"cp{i}", payment=payment).start()
            payouts.append(Account.create().address)
            m = cp.get("/api/v1/onboarding/provisioned")
            post(cp, "/onboarding/onboard", {"memory": int(m["memory"] * 0.4), "cpu": int(m["cpu"] * 0.4),
                                             "channel": "nunet-test", "payment_addr": payouts[-1],
                                             "ntx_price": NTX_PRICE})  # fmt: skip
            cps.append(cp)
        ids = [cp.get("/api/v1/peers/self") for cp in cps]
        sp = make(
            "sp", payment=payment, p2p={"bootstrap_peers": [i["addrs"][0] for i in ids]},
            job={"quote_ttl_s": QUOTE_TTL_S},
        ).start()  # fmt: skip
        m = sp.get("/api/v1/onboarding/provisioned")
        post(sp, "/onboarding/onboard", {"memory": int(m["memory"] * 0.2), "cpu": int(m["cpu"] * 0.2),
                                         "channel": "nunet-test", "payment_addr": payouts[0]})  # fmt: skip
        arbiter = sp.get("/api/v1/wallet")["address"]
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": deployer, "to": arbiter, "value": Wei(10**18)})
        )
        wait_for(lambda: {i["peer_id"] for i in ids} <= peer_ids(sp), 20, "the SP sees both providers")
        yield PaidNetwork(Paying(w3, escrow), cps, ids, payouts, sp, anvil.url)


@pytest.fixture
def paid_network(dms_process: Callable[..., DmsProcess], tmp_path: Path) -> Iterator[PaidNetwork]:
    try:
        with paid_network_on(dms_process, tmp_path / "anvil.log") as net:
            yield net
    except AnvilError as e:
        pytest.fail(f"anvil is required for this test: {e}")


async def test_a_paid_job_resumes_after_a_new_deposit(paid_network: PaidNetwork) -> None:
    n = paid_network
    pay, cps, ids, payouts, sp = n.pay, n.cps, n.ids, n.payouts, n.sp
    quote = post(sp, "/run/request-service", spec())
    job_id, arbiter = quote["job_id"], quote["arbiter"]
    first_i = 0 if quote["compute_provider"]["peer_id"] == ids[0]["peer_id"] else 1
    other_i = 1 - first_i
    assert quote["estimated_price"] == price(120)
    frames: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        tx1 = pay.deposit(escrow_job_id(job_id), quote["compute_provider"]["payment_addr"], arbiter, price(120))
        await send_status(ws, job_id, tx1)
        killer = asyncio.create_task(kill_after_checkpoints(sp, job_id, cps[first_i], 4))
        while True:
            frame = await ws.receive_json(timeout=120)
            frames.append(frame)
            if frame["action"] == "job-resume-quote":
                detail = frame["detail"]
                q = detail["quote"]
                assert frame["job_id"] == job_id and detail["run"] == 2 and detail["checkpoint"] >= 4
                assert detail["reason"].startswith("compute provider lost")
                assert q["escrow_job_id"] == escrow_job_id_hex(f"{job_id}/run2") != quote["escrow_job_id"]
                assert q["compute_provider"] == {"peer_id": ids[other_i]["peer_id"], "payment_addr": payouts[other_i]}
                assert 0 < q["duration_s"] <= 120 - 4 + 2  # the remaining time: 4 s or more were done
                assert q["estimated_price"] == price(q["duration_s"]) and q["arbiter"] == arbiter
                assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "awaiting_payment"  # nothing runs unpaid
                second = bytes.fromhex(q["escrow_job_id"][2:])
                tx2 = pay.deposit(second, payouts[other_i], arbiter, q["estimated_price"])
                await send_status(ws, job_id, tx2)
            if frame["action"] in ("job-completed", "job-failed", "error"):
                break
        await killer
    assert frames[-1]["action"] == "job-completed", frames[-1]
    actions = [f["action"] for f in frames]
    assert actions.count("job-resume-quote") == 1 and actions.count("job-submitted") == 2
    assert actions.index("job-resume-quote") < actions.index("job-resumed"), actions
    resumed = next(f for f in frames if f["action"] == "job-resumed")["detail"]
    assert resumed["run"] == 2 and resumed["compute_provider"] == ids[other_i]["peer_id"]
    stdout = "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    starts = [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("start ")]
    assert starts[0] == 0 and len(starts) == 2 and 0 < starts[1] < LONGER, stdout  # the counter went on
    # the lost run's deposit back to the payer, the resumed run's to the second provider
    wait_for(lambda: settled(sp, job_id, "refund"), 30, "the lost run is refunded")
    wait_for(lambda: settled(sp, run_key(job_id, 2), "release"), 30, "the resumed run is released")
    assert pay.state(job_id) == REFUNDED and pay.state(run_key(job_id, 2)) == RELEASED
    assert pay.w3.eth.get_balance(payouts[other_i]) == q["estimated_price"]
    assert pay.w3.eth.get_balance(payouts[first_i]) == 0
    async with aiohttp.ClientSession() as s, s.get(f"{sp.url}/api/v1/run/jobs/{job_id}/outputs") as r:
        with tarfile.open(fileobj=io.BytesIO(await r.read())) as tar:
            log = tar.extractfile("log")
            assert log is not None and log.read() == "".join(f"{i}\n" for i in range(1, LONGER + 1)).encode()
    runs = sp.get(f"/api/v1/run/jobs/{job_id}")["runs"]
    assert [(r["run"], r["compute_provider"]) for r in runs] == [
        (1, ids[first_i]["peer_id"]),
        (2, ids[other_i]["peer_id"]),
    ]
    assert runs[1]["checkpoint"] == resumed["checkpoint"]
    # NuNet's request-reward, asked with the resumed run's deposit, tells that run's settlement
    reward = post(sp, "/transactions/request-reward", {"tx_hash": tx2})
    assert reward["reward_type"] == "release" and reward["compute_provider_addr"] == payouts[other_i]

    # a rollback (a new run of the ended job from its first checkpoint) is a new job: its own deposit
    again = post(sp, f"/run/jobs/{job_id}/resume", {"checkpoint": 1})
    assert again["resumed_from"] == {"job_id": job_id, "checkpoint": 1}
    assert again["escrow_job_id"] == escrow_job_id_hex(again["job_id"]) and again["arbiter"] == arbiter
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        addr = again["compute_provider"]["payment_addr"]
        await send_status(ws, again["job_id"], pay.deposit(escrow_job_id(again["job_id"]), addr, arbiter, price(120)))
        while (frame := await ws.receive_json(timeout=60))["action"] not in ("job-completed", "job-failed", "error"):
            pass
    assert frame["action"] == "job-completed", frame
    wait_for(lambda: settled(sp, again["job_id"], "release"), 30, "the rollback's run is released")


async def test_an_unpaid_resume_quote_expires_across_an_sp_restart(paid_network: PaidNetwork) -> None:
    n = paid_network
    pay, cps, ids, sp = n.pay, n.cps, n.ids, n.sp
    quote = post(sp, "/run/request-service", spec(COUNTER.replace(f"-lt {COUNT}", "-lt 900")))
    job_id, arbiter = quote["job_id"], quote["arbiter"]
    first = cps[0] if quote["compute_provider"]["peer_id"] == ids[0]["peer_id"] else cps[1]
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        tx1 = pay.deposit(escrow_job_id(job_id), quote["compute_provider"]["payment_addr"], arbiter, price(120))
        await send_status(ws, job_id, tx1)
        killer = asyncio.create_task(kill_after_checkpoints(sp, job_id, first, 1))
        while (await ws.receive_json(timeout=60))["action"] != "job-resume-quote":
            pass
        await killer
    # the SP restarts while the resume quote waits: the quote, its run number and the owed refund are kept
    sp.kill9()
    sp.start()
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "subscribe", "job_id": job_id})
        frames = []
        while (frame := await ws.receive_json(timeout=QUOTE_TTL_S + 30))["action"] not in (
            "job-completed",
            "job-failed",
        ):
            frames.append(frame)
    actions = [f["action"] for f in frames]
    assert actions.count("job-resume-quote") == 1 and "job-resumed" not in actions, actions
    assert frame["action"] == "job-failed" and "quote for run 2" in frame["message"], frame
    assert "expired unpaid" in frame["message"]
    job = sp.get(f"/api/v1/run/jobs/{job_id}")
    assert job["state"] == "failed" and "expired unpaid" in job["reason"]
    wait_for(lambda: settled(sp, job_id, "refund"), 30, "the lost run is refunded")
    assert pay.state(job_id) == REFUNDED and pay.state(run_key(job_id, 2)) == 0  # the second was never paid


async def test_nunet_run_pays_for_the_resumed_run(paid_network: PaidNetwork) -> None:
    n = paid_network
    payer = Account.create()
    n.pay.w3.eth.wait_for_transaction_receipt(
        n.pay.w3.eth.send_transaction({"from": n.pay.account, "to": payer.address, "value": Wei(10**18)})
    )
    pays = ["--pay-key", payer.key.hex(), "--rpc-url", n.rpc_url]
    args = ["run", "--cpu", str(CPU_MHZ), "--memory", "32", "--duration", "120", "--checkpoint-every", "1",
            "--resume-on-failure", *pays, "--", "sh", "-c", COUNTER_10S]  # fmt: skip
    cli = asyncio.create_task(asyncio.to_thread(run_cli, *args, dms=n.sp.url, timeout=120))

    def running() -> dict[str, Any] | None:
        return next((j for j in n.sp.get("/api/v1/run/jobs")["jobs"] if j["state"] == "running"), None)

    job = await asyncio.to_thread(wait_for, running, 30, "the job runs")
    victim = n.cps[[i["peer_id"] for i in n.ids].index(job["compute_provider"])]
    await kill_after_checkpoints(n.sp, job["job_id"], victim, 4)
    out = await cli
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "needs a new deposit" in out.stdout and "for run 2" in out.stdout and "counted" in out.stdout
    wait_for(lambda: settled(n.sp, job["job_id"], "refund"), 30, "the lost run is refunded")
    wait_for(lambda: settled(n.sp, run_key(job["job_id"], 2), "release"), 30, "the resumed run is released")
