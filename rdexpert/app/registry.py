"""The checkpoints an app session can use: shipped, local folders, a Hub repository, and fine-tuned ones.

Discovery only reads ``config.json`` files; models are loaded on first use
(through :class:`rdexpert.inference.predictor.Predictor`) and kept in a small cache. A
checkpoint that is missing or broken becomes an :class:`Entry` with an
``error`` (shown in the page), never an exception at start-up.

One :class:`Registry` holds the checkpoints every visitor may use (shipped,
``--checkpoints``, Hub). A browser session's fine-tunes go into that session's
own registry, made with ``Registry(parent=shared)``: it lists and loads the
shared checkpoints plus its own, and no other session's. Texts meant for the
page name checkpoints by folder name, never by server path
(:func:`public_text`); the full paths go to the server log.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from rdexpert.checkpoint.folder import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, CheckpointInfo, read_config
from rdexpert.hub.resolve import list_repo_categories
from rdexpert.model import VARIANTS
from rdexpert.training.config import PRESETS

# the paper's ablation ladder (docs/design.md §3.4): every variant but the plain-skip one, from plain RD up to the full model
ABLATION_VARIANTS = tuple(name for name, variant in VARIANTS.items() if variant.skip != "plain")
# what the Ablations tab compares: the ladder, then the other variants (full_plain: the full model with plain skips,
# the control for the gate), so every variant that is shipped and selectable is also in the comparison
COMPARED_VARIANTS = (*ABLATION_VARIANTS, *(name for name in VARIANTS if name not in ABLATION_VARIANTS))

log = logging.getLogger(__name__)

# an absolute path (POSIX or Windows) with at least one folder in it: /a/b/c.png, C:\\x\\y.zip
# (an absolute path starts the text or follows a space, quote or bracket: not "org/name/cat", a Hub address)
_PATH = re.compile(r"(?<![\w.@~-])(?:[A-Za-z]:)?(?:[/\\][^\s/\\'\"`<>|]+)+[/\\]([^\s/\\'\"`<>|]*)")
# the same inside quotes, where it may hold spaces: '/srv/my uploads/a b.png'
_QUOTED_PATH = re.compile(r"(['\"`])(?:[A-Za-z]:)?[/\\][^'\"`]*?([^/\\'\"`]*)\1")


def public_text(text: str) -> str:
    """``text`` with every absolute server path shortened to its last component (for messages in the page)."""
    text = _QUOTED_PATH.sub(lambda m: f"{m.group(1)}{m.group(2) or '…'}{m.group(1)}", str(text))
    return _PATH.sub(lambda m: m.group(1) or "…", text)


@dataclass
class Entry:
    """One checkpoint as the app knows it."""

    key: str
    ref: str  # local folder, or ORG/NAME/CATEGORY[@REV] on the Hub
    source: str  # shipped | local | hub | fine-tuned
    config: dict | None = None
    error: str | None = None
    folder: Path | None = None  # local folder, when there is one
    eval_samples: list | None = None  # fine-tuned: the labelled images it was evaluated on
    archive: Path | None = None  # fine-tuned: the zip to download

    @property
    def public_ref(self) -> str:
        """Where the checkpoint comes from, as the page may show it: a Hub address, else the folder name."""
        if self.source == "hub":
            return self.ref
        return self.folder.name if self.folder is not None else Path(self.ref).name

    @property
    def ok(self) -> bool:
        return self.error is None and self.config is not None

    @property
    def info(self) -> CheckpointInfo:
        return CheckpointInfo.from_config(self.config)

    @property
    def category(self) -> str | None:
        return self.info.category

    @property
    def variant(self) -> str | None:
        return self.info.variant

    @property
    def image_size(self) -> int | None:
        return self.info.image_size

    @property
    def metrics(self) -> dict:
        return flatten_metrics(self.info.metrics, self.info.default_setting)

    def describe(self) -> str:
        info = self.info
        parts = [
            f"**{self.key}**",
            f"variant `{info.variant or '?'}`",
            f"backbone `{info.backbone or '?'}`",
            f"{info.image_size or '?'} px",
            f"source: {self.source} (`{self.public_ref}`)",
        ]
        return " · ".join(parts)


def _numbers(section: dict) -> dict[str, float]:
    return {k: float(v) for k, v in section.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def flatten_metrics(metrics: dict, default_setting: str = "teacher/gated") -> dict[str, float]:
    """Metrics as ``{name: float}``.

    ``config["metrics"]`` is either flat or keyed by inference setting
    (``{"teacher/gated": {...}, "expert/gated": {...}}``, see
    ``rdexpert.checkpoint.folder.record_metrics``); then the default setting's numbers
    are used, or the first setting's when the default is absent.
    """
    flat = _numbers(metrics)
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if nested:
        chosen = nested.get(default_setting) or next(iter(nested.values()))
        for key, value in _numbers(chosen).items():
            flat.setdefault(key, value)
    return flat


def _label(config: dict, fallback: str) -> str:
    """"bottle · full · 256 px · cpu preset": what tells two checkpoints apart in the picker, product first (the
    image size and the training budget, a preset's name or else the iterations, separate the default model from
    the 128-px ablation variant of the same product and variant)."""
    info = CheckpointInfo.from_config(config)
    parts = [info.category or fallback, info.variant or "?"]
    if info.image_size:
        parts.append(f"{info.image_size} px")
    training = info.training or {}
    preset = PRESETS.get(training.get("preset"))
    if preset and all(training.get(k) == preset[k] for k in ("iterations", "image_size")):
        parts.append(f"{training['preset']} preset")  # its budget as the preset sets it (not a fine-tune's own)
    elif isinstance(training.get("iterations"), int):
        parts.append(f"{training['iterations']} iterations")
    return " · ".join(parts)


# the picker lists checkpoints from these sources grouped by product (a session's fine-tunes and loaded zips
# follow, in the order they were made)
GROUPED_SOURCES = ("shipped", "local", "hub")


def picker_order(entry: Entry) -> tuple:
    """Where ``entry`` goes in the picker: products alphabetically, within a product the default model first (the
    largest image size), then the variants in ablation-ladder order."""
    variant = entry.variant
    rank = COMPARED_VARIANTS.index(variant) if variant in COMPARED_VARIANTS else len(COMPARED_VARIANTS)
    return (entry.category or "", -(entry.image_size or 0), rank)


class Registry:
    """Thread-safe list of checkpoints plus a small cache of loaded predictors.

    ``parent``: a registry whose checkpoints this one also lists and loads (a
    browser session's registry over the shared one); its own entries are
    visible only through it, and their keys never collide with the parent's.
    """

    def __init__(self, device: str = "auto", cache_size: int = 6, parent: Registry | None = None,
                 backend: str | None = None):
        self.parent = parent
        self.device = parent.device if parent is not None and device == "auto" else device
        # the Predictor's backend ("torch" or "onnxruntime", CPU only); a session's registry follows its parent
        self.backend = backend or (parent.backend if parent is not None else "torch")
        self.cache_size = cache_size
        self.entries: dict[str, Entry] = {}
        self.messages: list[str] = []  # for the operator, with the details (also logged)
        self.notices: list[str] = []  # the same problems as a visitor of the page reads them (no flags, no errors)
        self._predictors: OrderedDict[str, object] = OrderedDict()
        self._load_seconds: dict[str, float] = {}
        self._lock = threading.RLock()
        self._load_locks: dict[str, threading.Lock] = {}

    # -- discovery -------------------------------------------------------------------------------
    def _taken(self, key: str) -> bool:
        return key in self.entries or (self.parent is not None and self.parent.has(key))

    def _unique_key(self, base: str, detail: str | None = None) -> str:
        """``base``, or when that is taken ``base (detail)`` (what differs: the folder's name), then a number."""
        if not self._taken(base):
            return base
        if detail and not self._taken(key := f"{base} ({detail})"):
            return key
        key, n = base, 1
        while self._taken(key):
            n += 1
            key = f"{base} ({n})"
        return key

    def add(self, entry: Entry) -> Entry:
        with self._lock:
            entry.key = self._unique_key(entry.key, entry.public_ref if entry.source != "hub" else None)
            self.entries[entry.key] = entry
            if entry.error:
                detail = (f"Checkpoint `{entry.public_ref}` ({entry.source}) is not available: "
                          f"{public_text(entry.error)}")
                log.warning("checkpoint %s (%s) is not available: %s", entry.ref, entry.source, entry.error)
                self.messages.append(detail)
                self.notices.append(f"Checkpoint `{entry.public_ref}` is not available: it could not be read "
                                    "(the details are in the server's log). The other checkpoints work.")
        return entry

    def remove(self, key: str) -> None:
        """Forget one of this registry's own checkpoints (a loaded zip that failed to load)."""
        with self._lock:
            self.entries.pop(key, None)
            self._predictors.pop(key, None)
            self._load_seconds.pop(key, None)

    def add_local(self, folder: str | Path, source: str = "local", name: str | None = None) -> Entry:
        """A checkpoint folder; ``name`` replaces the folder name in the label (e.g. a fine-tune's name)."""
        folder = Path(folder)
        try:
            config = read_config(folder)
            if not (folder / WEIGHTS_NAME).is_file():
                raise CheckpointError(f"{WEIGHTS_NAME} is missing in {folder}")
            error = None
        except (CheckpointError, OSError, ValueError) as err:  # ValueError covers broken JSON
            config, error = None, str(err)
        label = _label(config, name or folder.name) if config else (name or folder.name)
        if source == "shipped":
            key = f"{label} · {source}"
        elif name:
            key = f"{label} · {source}" if label.startswith(name) else f"{name}: {label} · {source}"
        else:
            key = f"{label} · {source}: {folder.name}"
        return self.add(Entry(key=key, ref=str(folder), source=source, config=config, error=error, folder=folder))

    def scan(self, directory: str | Path, source: str = "local", required: bool = True) -> list[Entry]:
        """Every subfolder of ``directory`` with a config.json (or the folder itself when it has one)."""
        directory = Path(directory)
        if (directory / CONFIG_NAME).is_file():
            return [self.add_local(directory, source)]
        if not directory.is_dir():
            if required:
                log.warning("checkpoint folder %s does not exist", directory)
                self.messages.append(f"Checkpoint folder `{directory.name}` does not exist.")
            return []
        found = [
            self.add_local(sub, source)
            for sub in sorted(directory.iterdir())
            if sub.is_dir() and (sub / CONFIG_NAME).is_file()
        ]
        if not found and required:
            log.warning("no checkpoint in %s", directory)
            self.messages.append(f"No checkpoint (a subfolder with {CONFIG_NAME}) in `{directory.name}`.")
        return found

    def add_hub(self, repo: str) -> list[Entry]:
        """Every category of a Hub repository ``ORG/NAME[@REV]``, from its config.json files alone (offline: from the
        local Hugging Face cache); a category's weights are fetched when it is first chosen, from the same commit."""
        try:
            snapshot, categories = list_repo_categories(repo)
        except Exception as error:  # HubError says what to do; anything else (a dropped connection) gets its type
            why = str(error) if isinstance(error, CheckpointError) else f"{type(error).__name__}: {error}"
            self.messages.append(f"Could not list the Hub repository `{repo}`: {public_text(why)}")
            log.warning("could not list the Hub repository %s: %s", repo, why)
            self.notices.append(self._hub_notice(repo))
            return []
        repo_id = repo.partition("@")[0]
        if not categories:
            self.messages.append(f"The Hub repository `{repo}` has no `<category>/{CONFIG_NAME}`.")
            log.warning("the Hub repository %s has no <category>/%s", repo, CONFIG_NAME)
            self.notices.append(self._hub_notice(repo))
        added = []
        for category in categories:
            try:
                config, error = read_config(snapshot / category), None
            except (CheckpointError, OSError) as err:
                config, error = None, str(err)
            label = f"{category} · {CheckpointInfo.from_config(config).variant or '?'}"  # the repo's folder name
            ref = f"{repo_id}/{category}@{snapshot.name}"  # the listed commit: weights and config always match
            added.append(self.add(Entry(key=f"{label} · hub: {repo_id}", ref=ref, source="hub", config=config,
                                        error=error)))
        return added

    def _hub_notice(self, repo: str) -> str:
        others = "the other checkpoints and every tab still work" if self.choices() else \
            "you can still fine-tune a model of your own in the Fine-tune tab"
        return f"The models of `{repo.partition('@')[0]}` are not available right now; {others}."

    # -- queries ---------------------------------------------------------------------------------
    def has(self, key: str | None) -> bool:
        """Whether ``key`` is a checkpoint of this registry or of its parent."""
        with self._lock:
            if key in self.entries:
                return True
        return self.parent is not None and self.parent.has(key)

    def _owner(self, key: str | None) -> Registry:
        """This registry when ``key`` is one of its own entries, else the parent (which may not know it either)."""
        with self._lock:
            if key in self.entries or self.parent is None:
                return self
        return self.parent

    def choices(self) -> list[str]:
        inherited = self.parent.choices() if self.parent is not None else []
        with self._lock:
            usable = [e for e in self.entries.values() if e.ok]
        grouped = sorted((e for e in usable if e.source in GROUPED_SOURCES), key=picker_order)  # stable
        return inherited + [e.key for e in grouped] + [e.key for e in usable if e.source not in GROUPED_SOURCES]

    def get(self, key: str | None) -> Entry:
        owner = self._owner(key)
        if owner is not self:
            return owner.get(key)
        with self._lock:
            if key not in self.entries:
                raise KeyError(f"unknown checkpoint {key!r}")
            return self.entries[key]

    def _candidates(self, category: str) -> list[Entry]:
        """Loaded checkpoints of ``category`` that are compared variants (the parent's, shipped ones, first)."""
        out = self.parent._candidates(category) if self.parent is not None else []
        with self._lock:
            return out + [e for e in self.entries.values()
                          if e.ok and e.category == category and e.variant in COMPARED_VARIANTS]

    def variants(self, category: str | None) -> dict[str, Entry]:
        """One checkpoint of each variant for ``category`` (the ablation ladder, then the others, such as
        full_plain), all trained with the same budget (backbone, image size, iterations), so the comparison is
        like with like: the budget with the most variants wins."""
        if category is None:
            return {}
        groups: dict[tuple, dict[str, Entry]] = {}
        for entry in self._candidates(category):
            t = entry.info.training
            budget = (t.get("backbone"), t.get("image_size"), t.get("iterations"))
            groups.setdefault(budget, {}).setdefault(entry.variant, entry)
        best = max(groups.values(), key=len, default={})
        return {v: best[v] for v in COMPARED_VARIANTS if v in best}

    def all_messages(self) -> list[str]:
        """The parent's messages, then this registry's (for the operator: with the details)."""
        return (self.parent.all_messages() if self.parent is not None else []) + list(self.messages)

    def all_notices(self) -> list[str]:
        """The parent's notices, then this registry's: the problems as the page shows them to a visitor."""
        return (self.parent.all_notices() if self.parent is not None else []) + list(self.notices)

    # -- models ----------------------------------------------------------------------------------
    def predictor(self, key: str):
        """The loaded Predictor of ``key`` (loaded on first use; errors become CheckpointError)."""
        owner = self._owner(key)
        if owner is not self:
            return owner.predictor(key)
        entry = self.get(key)
        if not entry.ok:
            raise CheckpointError(entry.error or "not available")
        with self._lock:
            if key in self._predictors:
                self._predictors.move_to_end(key)
                return self._predictors[key]
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:  # one load per checkpoint even when several sessions ask at once
            with self._lock:
                if key in self._predictors:
                    return self._predictors[key]
            from rdexpert.inference.predictor import Predictor

            began = time.perf_counter()
            try:
                predictor = Predictor.from_pretrained(entry.ref, device=self.device, backend=self.backend)
            except Exception as error:
                log.exception("could not load checkpoint %s", entry.ref)
                raise CheckpointError(
                    f"could not load `{entry.public_ref}`: {type(error).__name__}: {public_text(error)}"
                ) from error
            with self._lock:
                self._load_seconds[key] = time.perf_counter() - began
                self._predictors[key] = predictor
                while len(self._predictors) > self.cache_size:
                    self._predictors.popitem(last=False)
            return predictor

    def load_seconds(self, key: str) -> float | None:
        owner = self._owner(key)
        return owner.load_seconds(key) if owner is not self else self._load_seconds.get(key)

    def is_loaded(self, key: str) -> bool:
        owner = self._owner(key)
        return owner.is_loaded(key) if owner is not self else key in self._predictors

    def release(self) -> None:
        """Forget the loaded predictors (a closed session's models)."""
        with self._lock:
            self._predictors.clear()
