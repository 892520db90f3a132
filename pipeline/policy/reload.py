"""Hot reload of the policy file: stages keep serving with the last good policy.

:class:`PolicyWatcher` checks the file's modification time and size at most every
``interval_s``; when they change and the content digest differs, it parses the new file. A
valid file replaces the policy (its digest is the new ``version``, recorded on every decision);
an invalid one is logged with every problem and kept in ``error`` while the old policy stays in
force.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from pathlib import Path

from pipeline.policy.document import Policy, PolicyError, load_policy

log = logging.getLogger(__name__)


def policy_version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class PolicyWatcher:
    def __init__(self, path: Path, interval_s: float = 1.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self.policy: Policy = load_policy(path)  # a broken file at start is fatal
        self.version = policy_version(path)
        self.error: str | None = None
        self.reloads = 0
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check the file every ``interval_s`` in the background, traffic or not."""
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.refresh()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime, stat.st_size

    def refresh(self, force: bool = False) -> bool:
        """Reload if the file changed; True when a new policy took effect."""
        if not force and time.monotonic() - self._checked < self.interval_s:
            return False
        self._checked = time.monotonic()
        stamp = self._file_stamp()
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        try:
            version = policy_version(self.path)
            if version == self.version:
                return False
            policy = load_policy(self.path)
        except (OSError, PolicyError) as exc:
            self.error = str(exc)
            log.error("policy reload failed; keeping version %s in force:\n%s", self.version, exc)
            return False
        self.policy, self.version, self.error = policy, version, None
        self.reloads += 1
        log.info("policy reloaded: version %s", version)
        return True
