"""Reading settings: from code, ``CQRS_SSO_*`` variables (and ``_FILE`` variables for
secrets) and a TOML file, every value typed by its annotation in ``schema``.

Precedence is one rule, most specific to this run first: **explicit arguments (CLI flags or
keyword arguments) > environment variables > TOML file > defaults.** Every problem found
on the way — an unknown name, a value of the wrong type, an unreadable file — is collected,
so that a deployer sees them all at once, never one per attempt.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
import types
from collections import abc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..core.authorisation import AccessRule, rules_from_value
from .schema import SECTIONS

# Where settings come from besides code: a TOML file, and the environment (os.environ).
ConfigFile = str | os.PathLike[str] | None
Environ = Mapping[str, str] | None

ENV_PREFIX = "CQRS_SSO_"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Setting:
    """One configurable name: its section, its type and its documentation."""

    name: str
    section: str
    kind: Any
    field: Field[Any]

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def secret(self) -> bool:
        return bool(self.field.metadata.get("secret"))


def _settings() -> dict[str, Setting]:
    found: dict[str, Setting] = {}
    for section_name, section in SECTIONS.items():
        hints = get_type_hints(section)
        for item in fields(section):
            assert item.name not in found, f"{item.name} is in two sections"
            found[item.name] = Setting(item.name, section_name, hints[item.name], item)
    return found


SETTINGS: dict[str, Setting] = _settings()


def all_settings() -> Iterator[Setting]:
    return iter(SETTINGS.values())


def did_you_mean(name: str, candidates: Iterator[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kinds(kind: Any) -> tuple[Any, ...]:
    """The alternatives of a union annotation (``X | None``), else the type itself."""
    if get_origin(kind) in (Union, types.UnionType):
        return get_args(kind)
    return (kind,)


def coerce(setting: Setting, raw: object) -> object:
    """``raw`` as the setting's type; raises ``ValueError`` with the reason.

    Strings (environment variables) are parsed: a comma list for tuples, the usual words
    for booleans. Values from TOML and code are checked for the type they already have.
    """
    alternatives = _kinds(setting.kind)
    if raw is None and type(None) in alternatives:
        return None
    for kind in alternatives:
        parse = _parser(kind)
        if parse is not None:
            return parse(raw)
        if get_origin(kind) is not None and callable(raw) and not isinstance(raw, str):
            return raw  # Callable[..., Any]: a lookup given in code
    return _as_text(raw)


def _parser(kind: Any) -> Callable[[object], object] | None:
    """How to read a value of ``kind``; ``None`` for text and callables."""
    origin = get_origin(kind)
    if origin is tuple and get_args(kind)[0] is AccessRule:
        return rules_from_value
    if origin is tuple and get_origin(get_args(kind)[0]) in (Mapping, abc.Mapping):
        return _as_tables
    if origin is tuple:
        return _as_tuple
    if kind is Mapping[str, str] or origin in (dict, Mapping, abc.Mapping):
        return _as_mapping
    if origin is Literal:
        return lambda raw: _as_choice(raw, get_args(kind))
    if kind is bool:
        return _as_bool
    if kind is int:
        return lambda raw: _as_number(raw, int, "a whole number")
    if kind is float:
        return lambda raw: _as_number(raw, float, "a number")
    return None


def _as_choice(raw: object, choices: tuple[object, ...]) -> object:
    if raw in choices:
        return raw
    raise ValueError("is not one of " + ", ".join(str(a) for a in choices))


def _as_mapping(raw: object) -> dict[str, str]:
    """A table of text (TOML), a dict (code), or a JSON object (a variable)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"is not a JSON object ({error.msg})") from None
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ValueError("is not a table of names to text")
    return dict(raw)


def _as_tables(raw: object) -> tuple[Mapping[str, object], ...]:
    """A list of tables: TOML's ``[[providers]]``, a list of dicts (code), or a JSON array
    of objects (a variable). Each table's values are typed when it is built."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"is not a JSON array ({error.msg})") from None
    if not isinstance(raw, list | tuple) or not all(
        isinstance(t, Mapping) and all(isinstance(k, str) for k in t) for t in raw
    ):
        raise ValueError("is not a list of tables")
    return tuple(dict(table) for table in raw)


def _as_text(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise ValueError(f"is not text but {type(raw).__name__}")


def _as_number(raw: object, kind: type[int] | type[float], what: str) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"is not {what}")
    if kind is int and isinstance(raw, float):
        raise ValueError(f"is not {what}")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"is not {what}") from None


def _as_tuple(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        items: list[object] = list(raw.split(","))
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ValueError("is not a list (in a variable: a comma list)")
    if not all(isinstance(item, str | int | float) for item in items):
        raise ValueError("is not a list of text values")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _as_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError("is not true or false")


@dataclass
class Sources:
    """Raw values by setting name, with where each came from (for the error lines)."""

    values: dict[str, object]
    origin: dict[str, str]
    problems: list[str]

    def put(self, name: str, value: object, origin: str) -> None:
        self.values[name] = value
        self.origin[name] = origin


def read_environ(environ: Mapping[str, str], into: Sources) -> None:
    """``CQRS_SSO_<NAME>`` and, for any setting, ``CQRS_SSO_<NAME>_FILE`` (a path whose
    content is the value, as container secrets are mounted)."""
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG_FILE":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name.endswith("_file") and name[:-5] in SETTINGS and name not in SETTINGS:
            name = name[:-5]
            try:
                raw = Path(raw).read_text(encoding="utf-8").strip()
            except OSError as error:
                into.problems.append(f"{key}: cannot read {raw!r}: {error.strerror}")
                continue
        if name in SETTINGS:
            into.put(name, raw, key)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``CQRS_SSO_*`` variables that name no setting: a warning each (a typo is silently
    ignored otherwise), with the closest real name."""
    known = {s.env for s in SETTINGS.values()} | {s.env + "_FILE" for s in SETTINGS.values()}
    known.add(ENV_PREFIX + "CONFIG_FILE")
    return [
        f"{key} is not a setting{did_you_mean(key, sorted(known))}; it is ignored"
        for key in sorted(environ)
        if key.startswith(ENV_PREFIX) and key not in known
    ]


# Settings that name a file or folder: in a TOML file, a relative path is relative to the
# file itself (as in nginx's and systemd's own files), never to wherever the command runs.
PATH_SETTINGS = frozenset(
    {"private_key_file", "templates_dir", "redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"}
)
_FILE_LOOKUPS = ("csv:", "json:")
_SQLITE = "sql:sqlite:///"


def relative_to(folder: Path, name: str, raw: object) -> object:
    """``raw`` with a relative path in it made absolute against ``folder``."""
    if name == "providers" and isinstance(raw, list):
        return [
            {k: relative_to(folder, k, v) for k, v in t.items()} if isinstance(t, dict) else t for t in raw
        ]
    if not isinstance(raw, str) or not raw:
        return raw
    if name in PATH_SETTINGS:
        return str(folder / raw)
    if name == "account_lookup":
        for prefix in _FILE_LOOKUPS:
            if raw.startswith(prefix) and not raw[len(prefix) :].startswith("/"):
                return prefix + str(folder / raw[len(prefix) :])
        if raw.startswith(_SQLITE) and not raw[len(_SQLITE) :].startswith("/"):
            return _SQLITE + str(folder / raw[len(_SQLITE) :])
    return raw


def read_toml(path: Path, into: Sources) -> None:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        into.problems.append(f"config file {str(path)!r}: {error.strerror}")
        return
    except tomllib.TOMLDecodeError as error:
        into.problems.append(f"config file {str(path)!r}: not valid TOML: {error}")
        return
    for key, raw in document.items():
        if key not in SETTINGS:
            into.problems.append(f"config file: unknown key {key!r}{did_you_mean(key, sorted(SETTINGS))}")
            continue
        into.put(key, relative_to(path.resolve().parent, key, raw), f"{path.name}: {key}")


def typed(
    values: Mapping[str, object], problems: list[str], origin: Mapping[str, str]
) -> tuple[dict[str, object], set[str]]:
    """Every value as its setting's type; unknown names and wrong types become problems.
    Returns the typed values and the names that failed (nothing more is said of those)."""
    result: dict[str, object] = {}
    failed: set[str] = set()
    for name, raw in values.items():
        setting = SETTINGS.get(name)
        if setting is None:
            problems.append(f"{name}: not a setting{did_you_mean(name, sorted(SETTINGS))}")
            continue
        try:
            result[name] = coerce(setting, raw)
        except ValueError as error:
            failed.add(name)
            where = origin.get(name, name)
            shown = "(hidden)" if setting.secret else repr(raw)
            label = name if where == name else f"{name} ({where})"
            problems.append(f"{label}: {shown} {error}")
    return result, failed


def typed_table(
    table: Mapping[str, object], aliases: Mapping[str, str], section: str, problems: list[str], where: str
) -> dict[str, object] | None:
    """One ``[[providers]]``-like table typed as the settings of ``section`` it names (by
    their flat names, or the short ``aliases``); ``None`` when a value could not be read."""
    result: dict[str, object] = {}
    names = [n for n, s in SETTINGS.items() if s.section == section]
    readable = True
    for key, raw in table.items():
        name = aliases.get(key, key)
        setting = SETTINGS.get(name)
        if setting is None or setting.section != section:
            hint = did_you_mean(key, [*aliases, *names])
            problems.append(f"{where}: unknown key {key!r}{hint}")
            readable = False
            continue
        try:
            result[name] = coerce(setting, raw)
        except ValueError as error:
            shown = "(hidden)" if setting.secret else repr(raw)
            problems.append(f"{where}: {key}: {shown} {error}")
            readable = False
    return result if readable else None


def load_values(
    config_file: ConfigFile,
    environ: Mapping[str, str],
    overrides: Mapping[str, object],
) -> Sources:
    """Arguments > environment > TOML file > defaults, and every problem on the way."""
    sources = Sources({}, {}, [])
    if config_file is not None:
        read_toml(Path(config_file), sources)
    read_environ(environ, sources)
    for name, value in overrides.items():
        if value is not None:
            sources.put(name, value, name)
    return sources


def phrased(problems: list[str], sources: Sources, config_file: ConfigFile) -> list[str]:
    """Each problem said for where the value came from: a value that was set names its
    variable or TOML key; a value that was missing says how to set it, in the terms the
    deployer is using (a TOML file, or variables)."""
    result = []
    for problem in problems:
        name, colon, rest = problem.partition(": ")
        setting = SETTINGS.get(name)
        if not colon or setting is None or rest.startswith("(") or " (" in name:
            result.append(problem)
        elif name in sources.origin:
            result.append(f"{name} ({sources.origin[name]}): {rest}")
        elif config_file is not None:
            result.append(f"{problem} — add {name} = … to {Path(config_file).name}, or set {setting.env}")
        else:
            result.append(f"{problem} — set {setting.env}")
    return result
