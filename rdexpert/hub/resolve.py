"""Resolving Hub addresses to local checkpoint folders (what loading needs; no publishing here).

A checkpoint is named either by a local folder or by ``ORG/NAME/CATEGORY[@REVISION]``
(REVISION: a branch, tag or commit; default ``main``). huggingface_hub's
``snapshot_download`` resolves the revision to one commit and fetches only that
commit's ``CATEGORY/*`` files, so the files always belong together even if the
branch moves meanwhile; the commit is reported in ``config["source"]``, and
``@<commit>`` pins it for good. :func:`list_repo_categories` lists a repo's categories
the same way, from their ``config.json`` files alone (the app's menu).

Offline (``HF_HUB_OFFLINE=1``) or with the Hub unreachable, the local Hugging
Face cache is used and a warning says so; with nothing cached the error says how
to get the files. All of it is huggingface_hub's own cache and download code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, errors, is_offline_mode, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from rdexpert.checkpoint.format import CONFIG_NAME, CheckpointError

logger = logging.getLogger(__name__)

NAME = r"[A-Za-z0-9][\w.-]*"
ADDRESS = re.compile(rf"^(?P<repo_id>{NAME}/{NAME})/(?P<category>{NAME})(?:@(?P<revision>[^\s@]+))?$")
# a partly downloaded snapshot; huggingface_hub versions before this error raise LocalEntryNotFoundError instead
_NOT_CACHED = (LocalEntryNotFoundError, getattr(errors, "IncompleteSnapshotError", LocalEntryNotFoundError))


class HubError(CheckpointError):
    """A Hub checkpoint could not be found, fetched or published."""


@dataclass(frozen=True)
class HubAddress:
    """``ORG/NAME/CATEGORY@REVISION``: a category subfolder of a model repo at one revision."""

    repo_id: str
    category: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.category}@{self.revision}"


def parse_hub_address(ref: str) -> HubAddress | None:
    """The Hub address ``ref`` spells, or None when it is not of the form ``ORG/NAME/CATEGORY[@REVISION]``."""
    match = ADDRESS.match(str(ref))
    if match is None:
        return None
    return HubAddress(match["repo_id"], match["category"], match["revision"] or "main")


def hub_address(repo: str, subfolder: str | None = None, revision: str | None = None) -> str:
    """``ORG/NAME`` + category subfolder + revision as one reference ``ORG/NAME/CATEGORY[@REVISION]`` (checked)."""
    if "@" in repo and revision is not None:
        raise ValueError(f"{repo!r} already names a revision; pass it in one place only")
    ref = f"{repo.strip('/')}/{subfolder.strip('/')}" if subfolder else repo
    if revision:
        ref = f"{ref}@{revision}"
    if parse_hub_address(ref) is None:
        raise ValueError(f"{ref!r} is not a Hub address ORG/NAME/CATEGORY[@REVISION]: give repo 'ORG/NAME' "
                         "and the category as subfolder=")
    return ref


def resolve_checkpoint(
    ref: str | Path, cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None
) -> tuple[Path, dict]:
    """A local checkpoint folder for ``ref`` and a ``source`` record (where it came from, which commit).

    An existing local path always wins over a Hub address of the same spelling.
    """
    path = Path(ref).expanduser()
    if path.exists():
        return path, {"type": "local", "path": str(path.resolve())}
    hub = parse_hub_address(str(ref))
    if hub is None:
        raise CheckpointError(
            f"checkpoint {str(ref)!r} is neither an existing folder nor a Hub address ORG/NAME/CATEGORY[@REVISION]"
        )
    snapshot = _snapshot(hub.repo_id, hub.revision, f"{hub.category}/*", str(hub), cache_dir, endpoint, token,
                         local_hint=f"; also, there is no local folder {str(ref)!r}")
    folder = snapshot / hub.category
    if not (folder / CONFIG_NAME).is_file():
        available = sorted(p.parent.name for p in snapshot.glob(f"*/{CONFIG_NAME}"))
        raise HubError(
            f"{hub}: commit {snapshot.name} has no checkpoint in folder {hub.category!r} "
            f"(categories available{' in the cache' if is_offline_mode() else ''}: {available or 'none'})"
        )
    source = {"type": "hub", "reference": str(hub), "repo_id": hub.repo_id, "category": hub.category,
              "revision": hub.revision, "commit": snapshot.name, "path": str(folder)}
    return folder, source


def list_repo_categories(
    repo: str, cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None
) -> tuple[Path, list[str]]:
    """The categories of the model repo ``ORG/NAME[@REVISION]`` and the snapshot of one commit holding their
    ``config.json`` files (a few kB each; weights are fetched only when a category is loaded). Offline or with the
    Hub out of reach: what the local cache holds of that revision, with a warning."""
    repo_id, _, revision = str(repo).partition("@")
    if not re.fullmatch(f"{NAME}/{NAME}", repo_id):
        raise HubError(f"{repo!r} is not a Hub model repository ORG/NAME[@REVISION]")
    snapshot = _snapshot(repo_id, revision or "main", f"*/{CONFIG_NAME}", str(repo), cache_dir, endpoint, token,
                         partial=True)
    return snapshot, sorted(p.parent.name for p in snapshot.glob(f"*/{CONFIG_NAME}"))


def _snapshot(repo_id: str, revision: str, pattern: str, what: str, cache_dir, endpoint, token,
              local_hint: str = "", partial: bool = False) -> Path:
    """Fetch the files matching ``pattern`` of one commit; fall back to the cache, saying so, when the Hub is out of
    reach (``partial``: a cached snapshot that lacks some of them will do)."""
    cached = dict(repo_id=repo_id, revision=revision, pattern=pattern, what=what, cache_dir=cache_dir,
                  local_hint=local_hint, partial=partial)
    if is_offline_mode():
        return _cached(why="HF_HUB_OFFLINE is set", **cached)
    api = HfApi(endpoint=endpoint, token=token)
    try:  # one cheap call first, so that a missing repo or an unreachable Hub gets its own clear message
        api.repo_info(repo_id, revision=revision)
    except RevisionNotFoundError:
        raise HubError(f"{what}: repository {repo_id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{what}: model repository {repo_id} not found on {api.endpoint} (or it is private: log in with "
            f"`hf auth login`){local_hint}"
        ) from None
    except Exception as error:  # connection refused, timeout, DNS, 5xx: the Hub is out of reach
        return _cached(why=f"the Hub could not be reached ({type(error).__name__}: {error})", **cached)
    # snapshot_download resolves the revision to one commit, downloads that commit's files only, and
    # records branch/tag -> commit in the cache's refs/ so the same reference also works offline later
    return Path(snapshot_download(repo_id, revision=revision, allow_patterns=pattern, cache_dir=cache_dir,
                                  endpoint=endpoint, token=token))


def _cached(repo_id: str, revision: str, pattern: str, what: str, cache_dir, local_hint: str, partial: bool,
            why: str) -> Path:
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=pattern, cache_dir=cache_dir,
                                          local_files_only=True))
    except _NOT_CACHED as error:
        if not (partial and getattr(error, "snapshot_path", None)):
            raise HubError(
                f"{what} is not in the local Hugging Face cache ({cache}) and {why}{local_hint}. "
                f"To fix: connect once (unset HF_HUB_OFFLINE) so it is downloaded, or fetch it elsewhere with "
                f"`hf download {repo_id} --include '{pattern}' --revision {revision}` and copy the "
                f"cache (HF_HUB_CACHE) here{', or pass a local checkpoint folder' if local_hint else ''}. "
                f"({type(error).__name__})"
            ) from None
        snapshot = Path(error.snapshot_path)  # the cache lacks some of the files: use the ones it has
    logger.warning("%s: using the locally cached snapshot %s of %s (not checked for updates)", why, snapshot.name, what)
    return snapshot
