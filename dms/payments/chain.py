"""Building web3 clients. The only place that constructs providers; web3 is imported here, on call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from web3 import AsyncWeb3


def connect_http(rpc_url: str, request_timeout_s: float = 10.0) -> AsyncWeb3[Any]:
    """An `AsyncWeb3` over JSON-RPC/HTTP. Lazy: no request is made until the first call.

    Each request is bounded by `request_timeout_s`; web3's own retries are off (the callers decide when to
    retry, and a verifier must not hang on a dead node).
    """
    from aiohttp import ClientTimeout
    from web3 import AsyncHTTPProvider, AsyncWeb3

    provider = AsyncHTTPProvider(
        rpc_url,
        request_kwargs={"timeout": ClientTimeout(total=request_timeout_s)},
        exception_retry_configuration=None,
    )
    return AsyncWeb3(provider)
