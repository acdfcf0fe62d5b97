"""Upper bounds for every number dms accepts from outside, each one something a real machine or chain reaches.

One place, so the REST models, the websocket frames, the peer protocol and the OpenAPI document agree.
A value past its bound is refused with a 4xx (or an `error` frame) naming the field; nothing changes.
"""

from __future__ import annotations

# Memory, MB: 16 TiB, above the largest single machines sold today (a few TiB of RAM).
MAX_MEMORY_MB = 16 * 1024 * 1024
# CPU, MHz (cores x clock): 1,024 cores at about 10 GHz.
MAX_CPU_MHZ = 10_000_000
# Container CPU limit, cores: as many as the largest machines have.
MAX_CORES = 1024
# Disk, MB: 1 PiB, beyond any single machine's local disks.
MAX_DISK_MB = 1024 * 1024 * 1024
# GPUs on one machine, and VRAM per GPU in MB: 64 cards; 1 TiB per card (the largest today hold 192 GB).
MAX_GPUS = 64
MAX_VRAM_MB = 1024 * 1024
# Wei: all the ether there is comes to about 1.2 x 10**26 wei, so no price or payment can exceed 10**27
# (far below the chain's own bound, 2**256 - 1, which would let 10**30 through).
MAX_WEI = 10**27
# Sequence numbers of a job's events: the store keeps them in SQLite INTEGER columns (signed 64-bit).
MAX_SEQ = 2**63 - 1
# Chain ids: EIP-2294 bounds them to 2**64 / 2 - 36 so that signatures' v values fit in 64 bits.
MAX_CHAIN_ID = 2**63 - 37
# The largest int NuNet's Go server decodes (int64): the bound of the numbers in NuNet's bodies.
GO_INT_MAX = 2**63 - 1
