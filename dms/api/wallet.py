"""This node's EVM wallet (the SP's arbiter, which pays gas for release and refund); payments are in nunet.py."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, reply
from dms.payments.wallet import Wallet


class WalletOut(BaseModel):
    address: str
    payment_mode: str
    key_file: str


async def wallet_show(request: web.Request) -> web.Response:
    c = ctx(request)
    wallet = Wallet.load_or_create(c.settings.general.data_dir)
    return reply(WalletOut(address=wallet.address, payment_mode=c.settings.payment.mode, key_file=str(wallet.path)))


ENDPOINTS = [
    Endpoint("GET", "/wallet", wallet_show, "This node's EVM address (fund it to pay gas as arbiter)", "wallet",
             response=WalletOut),
]  # fmt: skip
