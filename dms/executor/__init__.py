"""Executors run a job's container under hard limits. `base.py` is the contract; `docker.py` the engine."""
