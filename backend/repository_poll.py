"""`--model-control-mode poll`: the repository is watched as Triton watches it. Every
`--repository-poll-secs` seconds the model folders are compared with the last look (file names,
sizes and modification times): a new folder is loaded, a changed one reloaded (a failed reload
keeps the loaded versions serving), a removed one unloaded. RepositoryModelLoad/Unload stay
refused, as in Triton's poll mode."""

from __future__ import annotations

import asyncio
import logging
import os

from .errors import ServerError

log = logging.getLogger("backend.repository_poll")

DEFAULT_POLL_SECS = 15   # tritonserver's --repository-poll-secs


def snapshot(root: str, names: list[str]) -> dict[str, tuple]:
    """Per model folder: its files' (relative path, size, mtime) - what a change alters."""
    state = {}
    for name in names:
        folder = os.path.join(root, name)
        files = []
        for top, dirs, filenames in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = os.path.join(top, filename)
                try:
                    info = os.stat(path)
                except OSError:      # removed while we looked: the next poll sees it
                    continue
                files.append((os.path.relpath(path, folder), info.st_size, info.st_mtime_ns))
        state[name] = tuple(sorted(files))
    return state


class RepositoryPoller:
    def __init__(self, repository, interval_s: float):
        self.repository = repository
        self.interval_s = interval_s
        self.seen = {}
        self.seen = self._look()   # before the first load: a change during loading is caught

    def _look(self) -> dict[str, tuple]:
        try:
            return snapshot(self.repository.root, self.repository.scan())
        except OSError as err:      # the repository itself vanished or is unreadable
            log.error("poll: cannot read the model repository %s: %s", self.repository.root, err)
            return dict(self.seen)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.poll_once()

    async def poll_once(self) -> None:
        now = await asyncio.get_running_loop().run_in_executor(None, self._look)
        added = sorted(now.keys() - self.seen.keys())
        changed = sorted(n for n in now.keys() & self.seen.keys() if now[n] != self.seen[n])
        removed = sorted(self.seen.keys() - now.keys())
        self.seen = now
        for name in added + changed:
            log.info("poll: model folder '%s' %s: loading", name,
                     "added" if name in added else "changed")
            try:
                await self.repository.load(name)
            except ServerError as err:
                log.error("poll: model '%s' failed to load: %s", name, err.message)
        for name in removed:
            log.info("poll: model folder '%s' removed: unloading", name)
            await self.repository.unload(name)
