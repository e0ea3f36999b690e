"""Declarative checks for JSON values: each spec checks a value and says in words what it allows.

Why: the checkpoint schema (``rdexpert.checkpoint.schema``) is a table of these, so that every violation is one
sentence naming the dotted field path and the allowed range. A small table rather than pydantic: pydantic only
comes with the app's extra (through gradio), and the core package must load checkpoints without it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

MAX_TEXT = 65_536  # characters of any free-text field (a rule, a reason, an attribution, a path)
MAX_ITEMS = 1_000_000  # entries of any list or object
MAX_DEPTH = 32  # nesting of free-form JSON (a newer section, a training record)
MAX_NUMBER = 1e15  # any other stored number (seconds, counts, rates)


class Violation(ValueError):
    """One field that breaks the schema: its dotted path and a sentence on what is allowed."""

    def __init__(self, path: str, expected: str, value):
        self.path, self.expected, self.value = path, expected, value
        super().__init__(f"{path or 'the config'} must be {expected}, got {shown(value)}")


def shown(value) -> str:
    """A short, one-line description of a JSON value for an error message."""
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)  # repr escapes newlines and control characters
    return text if len(text) <= 60 else text[:57] + "..."


def child(path: str, key: str) -> str:
    """``path.key``, or ``path['odd key']`` for a key that is not a plain name."""
    if re.fullmatch(r"[\w/\-]{1,64}", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{shown(key)}]"


def _number_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- specs: each checks a value (raising Violation) and says in words what it allows ----------------------------
class Spec:
    def check(self, value, path: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def fits_type(self, value) -> bool:
        """Whether ``value`` is of this spec's JSON type (Either reports the error of the spec of that type)."""
        return True


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Int(Spec):
    low: int
    high: int
    multiple: int = 1

    def describe(self) -> str:
        if self.multiple > 1:
            return f"a multiple of {self.multiple} in [{self.low}, {self.high}]"
        if self.high >= 2**31:  # no practical upper end
            return f"an integer >= {self.low}"
        return f"an integer in [{self.low}, {self.high}]"

    def fits_type(self, value) -> bool:
        return _is_int(value)

    def check(self, value, path: str) -> None:
        if not _is_int(value) or not self.low <= value <= self.high or value % self.multiple:
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Num(Spec):
    low: float = -MAX_NUMBER
    high: float = MAX_NUMBER
    finite: bool = True  # False: NaN and infinities pass too (records of measurements that may be undefined)

    def describe(self) -> str:
        if not self.finite:
            return "a number"
        return f"a finite number in [{_number_text(self.low)}, {_number_text(self.high)}]"

    def fits_type(self, value) -> bool:
        return _is_number(value)

    def check(self, value, path: str) -> None:
        if not _is_number(value):
            raise Violation(path, self.describe(), value)
        if self.finite and not (math.isfinite(value) and self.low <= value <= self.high):
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Text(Spec):
    max_length: int = MAX_TEXT
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_words: str = ""  # what the pattern allows, in words

    def describe(self) -> str:
        if self.choices is not None:
            return ("one of " if len(self.choices) > 1 else "") + ", ".join(repr(c) for c in self.choices)
        if self.pattern is not None:
            return self.pattern_words
        return f"a string of at most {self.max_length} characters"

    def fits_type(self, value) -> bool:
        return isinstance(value, str)

    def check(self, value, path: str) -> None:
        if not isinstance(value, str) or len(value) > self.max_length \
                or (self.choices is not None and value not in self.choices) \
                or (self.pattern is not None and not re.fullmatch(self.pattern, value)):
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def fits_type(self, value) -> bool:
        return isinstance(value, bool)

    def check(self, value, path: str) -> None:
        if not isinstance(value, bool):
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Null(Spec):
    def describe(self) -> str:
        return "null"

    def fits_type(self, value) -> bool:
        return value is None

    def check(self, value, path: str) -> None:
        if value is not None:
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Either(Spec):
    options: tuple[Spec, ...]

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)

    def fits_type(self, value) -> bool:
        return any(o.fits_type(value) for o in self.options)

    def check(self, value, path: str) -> None:
        typed = [o for o in self.options if o.fits_type(value)]
        if len(typed) == 1:  # the one option of this JSON type explains best what is wrong deeper in (a list item)
            try:
                typed[0].check(value, path)
            except Violation as violation:
                if violation.path != path:
                    raise
                raise Violation(path, self.describe(), value) from None
            return
        for option in typed:
            try:
                option.check(value, path)
                return
            except Violation:
                pass
        raise Violation(path, self.describe(), value)


def optional(spec: Spec) -> Spec:
    """``spec`` or null."""
    return Either((spec, Null()))


@dataclass(frozen=True)
class List(Spec):
    item: Spec
    min_length: int = 0
    max_length: int = MAX_ITEMS

    def describe(self) -> str:
        if self.min_length == self.max_length:
            count = f"{self.min_length}"
        elif self.min_length == 0:
            count = f"at most {self.max_length}"
        else:
            count = f"{self.min_length} to {self.max_length}"
        return f"a list of {count} items, each {self.item.describe()}"

    def fits_type(self, value) -> bool:
        return isinstance(value, list)

    def check(self, value, path: str) -> None:
        if not isinstance(value, list) or not self.min_length <= len(value) <= self.max_length:
            raise Violation(path, self.describe(), value)
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]")


@dataclass(frozen=True)
class Json(Spec):
    """Any JSON value, nested at most ``depth`` deep, its strings and lists bounded (free-form records)."""

    depth: int = MAX_DEPTH

    def describe(self) -> str:
        return f"JSON nested at most {self.depth} deep"

    def check(self, value, path: str) -> None:
        stack = [(value, path, 0)]
        while stack:  # iterative: a deeply nested value must not exhaust the interpreter's stack
            item, where, depth = stack.pop()
            if depth > self.depth:
                raise Violation(where, f"nested less deeply (JSON at most {self.depth} levels)", item)
            if isinstance(item, dict):
                if len(item) > MAX_ITEMS:
                    raise Violation(where, f"an object of at most {MAX_ITEMS} keys", item)
                stack.extend((v, child(where, k), depth + 1) for k, v in item.items())
            elif isinstance(item, list):
                if len(item) > MAX_ITEMS:
                    raise Violation(where, f"a list of at most {MAX_ITEMS} items", item)
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
            elif isinstance(item, str):
                if len(item) > MAX_TEXT:
                    raise Violation(where, f"a string of at most {MAX_TEXT} characters", item)
            elif not (item is None or isinstance(item, (bool, int, float))):
                raise Violation(where, "a JSON value", item)


ANY = Json()


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with known fields (each optional); other keys must fit ``rest`` (None: not allowed)."""

    fields: dict = field(default_factory=dict)
    rest: Spec | None = ANY

    def describe(self) -> str:
        return "an object"

    def fits_type(self, value) -> bool:
        return isinstance(value, dict)

    def check(self, value, path: str) -> None:
        if not isinstance(value, dict):
            raise Violation(path, self.describe(), value)
        if len(value) > MAX_ITEMS:
            raise Violation(path, f"an object of at most {MAX_ITEMS} keys", value)
        for key, item in value.items():
            spec = self.fields.get(key, self.rest)
            if spec is None:
                raise Violation(child(path, key), f"absent (not a field of {path}; known: {', '.join(self.fields)})",
                                item)
            spec.check(item, child(path, key))


@dataclass(frozen=True)
class Map(Spec):
    """A JSON object whose keys are names and whose values all fit ``value``."""

    value: Spec
    max_items: int = MAX_ITEMS

    def describe(self) -> str:
        return f"an object whose values are each {self.value.describe()}"

    def fits_type(self, value) -> bool:
        return isinstance(value, dict)

    def check(self, value, path: str) -> None:
        if not isinstance(value, dict) or len(value) > self.max_items:
            raise Violation(path, self.describe(), value)
        for key, item in value.items():
            if len(key) > 256:
                raise Violation(child(path, key), "a key of at most 256 characters", key)
            self.value.check(item, child(path, key))
