"""What belongs to one browser session: its fine-tunes, its uploads, its folder; and the workdir's budget.

Every visitor's page is a Gradio session (``gr.Request.session_hash``). Its
fine-tuned checkpoints live in a :class:`Session`'s own registry (over the
shared one), so only that page lists and loads them, and its files live in
``<workdir>/sessions/<folder>/`` (uploads/ and finetuned/), a folder named by a
hash of the session id. The workdir is never served by the web server; the only
file a session gets a link to is its own zip download.

Nothing would ever delete those folders, so :func:`cleanup_workdir` keeps the
workdir within a size and age budget, deleting the folders of finished sessions
(closed pages, and folders left by earlier runs of the server) oldest first.
It runs whenever a fine-tune starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rdexpert.app.registry import Registry

log = logging.getLogger(__name__)

SESSIONS_DIR = "sessions"
LOCAL_SESSION = "local"  # handlers called without a request (tests, scripts)
SESSION_CACHE_SIZE = 2  # loaded fine-tuned models kept per session


def session_id(request) -> str:
    """The browser session of a gradio request (``"local"`` without one)."""
    return str(getattr(request, "session_hash", None) or LOCAL_SESSION)


def folder_name(sid: str) -> str:
    """The folder of a session: a hash of its id (ids come from the browser; hashes are safe names)."""
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()[:20]


@dataclass
class Session:
    """One browser session's fine-tunes: its registry over the shared one, its folder, its latest job."""

    sid: str
    folder: Path
    registry: Registry
    job: object | None = None  # the latest FineTuneJob
    last_seen: float = field(default_factory=time.time)

    @property
    def running(self) -> bool:
        return bool(self.job is not None and getattr(self.job, "running", False))

    def touch(self) -> None:
        self.last_seen = time.time()
        if self.folder.is_dir():
            try:
                os.utime(self.folder)
            except OSError:
                pass


class Sessions:
    """The open browser sessions of one app, by session id."""

    def __init__(self, registry: Registry, workdir: str | Path):
        self.registry = registry
        self.workdir = Path(workdir)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self.workdir / SESSIONS_DIR

    def get(self, request) -> Session:
        """The session of ``request`` (made on first use)."""
        sid = session_id(request)
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                session = Session(
                    sid,
                    self.root / folder_name(sid),
                    Registry(parent=self.registry, cache_size=SESSION_CACHE_SIZE),
                )
                self._sessions[sid] = session
        session.last_seen = time.time()
        return session

    def peek(self, request) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id(request))

    def registry_for(self, request) -> Registry:
        """The checkpoints ``request``'s page may use: the shared ones and its own fine-tunes."""
        session = self.peek(request)
        return session.registry if session is not None else self.registry

    def close(self, request) -> None:
        """The page went away: stop its training, forget its models; its folder is left to the cleanup."""
        with self._lock:
            session = self._sessions.pop(session_id(request), None)
        if session is None:
            return
        if session.running:
            session.job.cancel()
        session.registry.release()
        session.touch()  # its age counts from when it was closed

    def active_folders(self, max_idle_seconds: float | None = None) -> set[str]:
        """Folder names of the open sessions (those seen within ``max_idle_seconds``, or training)."""
        now = time.time()
        with self._lock:
            sessions = list(self._sessions.values())
        return {
            s.folder.name
            for s in sessions
            if s.running or max_idle_seconds is None or now - s.last_seen <= max_idle_seconds
        }

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed; files that vanish meanwhile count 0)."""
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def cleanup_workdir(
    root: str | Path,
    budget_mb: float | None = 500.0,
    max_age_hours: float | None = 24.0,
    active: set[str] | frozenset[str] = frozenset(),
    now: float | None = None,
) -> list[Path]:
    """Delete finished session folders under ``root``: too old ones, then the oldest until within budget.

    A folder's age is its modification time (a session touches its folder when
    a fine-tune starts or ends, and when it closes). Folders named in ``active``
    (open sessions) are never deleted, even when the budget is exceeded;
    ``budget_mb`` / ``max_age_hours`` None: no such limit. Returns the deleted folders.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    folders, total = [], 0
    for path in root.iterdir():
        if path.is_symlink() or not path.is_dir():
            continue
        size = folder_size(path)
        total += size  # open sessions count towards the budget too
        if path.name in active:
            continue
        try:
            folders.append((path.stat().st_mtime, path, size))
        except OSError:
            continue
    folders.sort(key=lambda f: f[0])  # oldest first
    deleted = []
    for mtime, path, size in folders:
        too_old = max_age_hours is not None and now - mtime > max_age_hours * 3600
        over_budget = budget_mb is not None and total > budget_mb * 2**20
        if not (too_old or over_budget):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            log.warning("could not delete the session folder %s", path)
            continue
        total -= size
        deleted.append(path)
        log.info("deleted session folder %s (%s)", path, "too old" if too_old else "over the workdir budget")
    return deleted
