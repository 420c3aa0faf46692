"""Noticing edits under a code_dir (runtimes/reload.py)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from sockway.runtimes.reload import CodeWatcher, snapshot


def test_snapshot_skips_bytecode_and_hidden_entries(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "mod.py").write_text("y = 2\n")
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / ".git" / "HEAD").write_text("ref\n")
    (tmp_path / ".app.py.swp").write_text("")
    assert set(snapshot(tmp_path)) == {str(tmp_path / "app.py"), str(tmp_path / "pkg" / "mod.py")}


async def test_watcher_calls_back_once_per_change(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    changes: list[int] = []
    changed = asyncio.Event()

    def on_change() -> None:
        changes.append(1)
        changed.set()

    watcher = CodeWatcher(interval_s=0.05)
    watcher.watch(tmp_path, on_change)
    task = asyncio.get_running_loop().create_task(watcher.run())
    try:
        (tmp_path / "new_module.py").write_text("y = 2\n")  # a new file counts too
        await asyncio.wait_for(changed.wait(), 10)
        changed.clear()
        (tmp_path / "app.py").write_text("x = 10\n")
        await asyncio.wait_for(changed.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(changes) == 2
