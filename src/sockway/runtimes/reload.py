"""``sockway serve --reload``: notice edits under a function's ``code_dir``.

Polls the modification time and size of every file below each watched directory (skipping
``__pycache__`` and hidden entries) every ``POLL_INTERVAL_S``; the scan runs in a thread so the
event loop never waits on the file system. Polling needs no extra dependency and works on every
file system (bind mounts and network shares included), at the cost of up to one interval of
delay. The first snapshot is taken when a directory is registered, so an edit made right after
start-up is seen.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("sockway")

POLL_INTERVAL_S = 0.5
MAX_FILES_PER_DIR = 20_000  # a code_dir larger than this is only partly watched (logged once)

Snapshot = dict[str, tuple[int, int]]


def snapshot(directory: Path) -> Snapshot:
    """``path → (mtime_ns, size)`` of the files below ``directory``."""
    found: Snapshot = {}
    stack = [str(directory)]
    while stack and len(found) < MAX_FILES_PER_DIR:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file():
                    st = entry.stat()
                    found[entry.path] = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
    return found


class CodeWatcher:
    """Calls every callback registered for a directory when a file below it changes."""

    def __init__(self, interval_s: float = POLL_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._callbacks: dict[Path, list[Callable[[], None]]] = {}
        self._snapshots: dict[Path, Snapshot] = {}

    def watch(self, directory: Path, on_change: Callable[[], None]) -> None:
        directory = directory.resolve()
        if directory not in self._callbacks:
            self._snapshots[directory] = snapshot(directory)
            if len(self._snapshots[directory]) >= MAX_FILES_PER_DIR:
                log.warning("--reload: only %d files of %s watched", MAX_FILES_PER_DIR, directory)
        self._callbacks.setdefault(directory, []).append(on_change)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for directory in list(self._callbacks):
                current = await asyncio.to_thread(snapshot, directory)
                if current != self._snapshots[directory]:
                    self._snapshots[directory] = current
                    log.info("--reload: files changed under %s", directory)
                    for callback in self._callbacks[directory]:
                        callback()
