"""Executors run a job under hard limits. `base.py` is the contract; `docker.py` (containers) and `wasm.py`
(WebAssembly modules in worker processes) implement it; `router.py` puts both behind the one contract."""
