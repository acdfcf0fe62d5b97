"""The service provider's record of each job's outputs: fetched from the job's provider when it reports
them, verified like every transfer, and remembered per job.

The record is one small JSON file per job under `<artifacts>/jobs/` (written once, by this class only),
so the job tables need no migration for it; the tar itself is an ordinary artifact in the store.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from dms.artifacts.store import Artifact, check_hash
from dms.artifacts.transfer import ArtifactTransfer
from dms.errors import DmsError

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class JobOutputs:
    def __init__(self, root: Path, transfer: ArtifactTransfer) -> None:
        self._root = root
        self._transfer = transfer

    def open(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)

    async def receive(self, job_id: str, cp_peer: str, reported: Any) -> dict[str, Any] | None:
        """Fetch the outputs a provider reported for `job_id` (`{"sha256", "size"}`) and record them;
        what to show (None when nothing usable was reported, or the transfer failed: logged)."""
        if not isinstance(reported, dict) or not JOB_ID.match(job_id):
            return None
        try:
            sha = check_hash(str(reported.get("sha256", "")))
            art = await self._transfer.fetch(cp_peer, sha)
        except DmsError as exc:
            log.warning("job %s: outputs not received from %s: %s", job_id, cp_peer, exc)
            return None
        tmp = self._root / f".{job_id}.json.tmp"
        tmp.write_text(json.dumps({"sha256": art.sha256, "size": art.size}))
        os.replace(tmp, self._root / f"{job_id}.json")
        return {"sha256": art.sha256, "size": art.size}

    def get(self, job_id: str) -> Artifact | None:
        """The outputs recorded for `job_id`, if any."""
        if not JOB_ID.match(job_id):
            return None
        try:
            data = json.loads((self._root / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None
        return Artifact(str(data["sha256"]), int(data["size"]))
