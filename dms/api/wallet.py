"""This node's EVM wallet (the SP's arbiter, which pays gas for release and refund) and its payments."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, reply
from dms.payments.wallet import Wallet


class WalletOut(BaseModel):
    address: str
    payment_mode: str
    key_file: str


class TransactionOut(BaseModel):
    job_id: str
    kind: str
    tx_hash: str | None
    amount: str | None
    state: str
    error: str | None
    at: datetime


class TransactionsOut(BaseModel):
    transactions: list[TransactionOut]


async def wallet_show(request: web.Request) -> web.Response:
    c = ctx(request)
    wallet = Wallet.load_or_create(c.settings.general.data_dir)
    return reply(WalletOut(address=wallet.address, payment_mode=c.settings.payment.mode, key_file=str(wallet.path)))


async def transactions(request: web.Request) -> web.Response:
    rows = await ctx(request).transactions.list()
    return reply(
        TransactionsOut(
            transactions=[
                TransactionOut(
                    job_id=r.job_id,
                    kind=r.kind,
                    tx_hash=r.tx_hash,
                    amount=r.amount,
                    state=r.state,
                    error=r.error,
                    at=r.at,
                )
                for r in rows
            ]
        )
    )


ENDPOINTS = [
    Endpoint("GET", "/wallet", wallet_show, "This node's EVM address (fund it to pay gas as arbiter)", "wallet",
             response=WalletOut),
    Endpoint("GET", "/transactions", transactions, "Payments: deposits verified, releases and refunds sent",
             "wallet", response=TransactionsOut),
]  # fmt: skip
