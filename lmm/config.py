"""
Configuration files: TOML, checked against a declared list of settings.

Every setting has a dotted key ("lmap.address"), a parser that says what is wrong
with a bad value, and a default (or none: then it is required). A bad file gives
L{ConfigError} naming the file and the key; the daemons turn that into one line
on stderr and a non-zero exit before anything starts.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

REQUIRED: Any = object()


class ConfigError(Exception):
    """A configuration file that cannot be used."""

    def __init__(self, path: str, key: str | None, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        where = f"{path}: key '{key}'" if key else path
        super().__init__(f"{where}: {message}")


Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Parser
    default: Any = REQUIRED
    help: str = ""
    table: bool = False  # a free-form table handed over whole (backend options)


def besideConfig(configPath: str | None, value: str) -> str:
    """A file named in a configuration file (a key file, a database):
    relative to that file's folder."""
    if configPath is None or os.path.isabs(value):
        return value
    return os.path.join(os.path.dirname(os.path.abspath(configPath)), value)


def writePrivateFile(path: str, text: str, sync: bool = False) -> None:
    """Write C{text} to C{path}, mode 0600, replacing it at once (a reader
    never sees half a file); with C{sync}, on the disk before it replaces."""
    partial = path + ".new"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.chmod(partial, 0o600)  # an existing file keeps its mode through O_CREAT
    os.replace(partial, path)


# --- parsers: each raises ValueError with a message for the user -------------


def string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def integer(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}, got {value}")
        return value

    return parse


def number(low: float, high: float) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}, got {value}")
        return float(value)

    return parse


def oneOf(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return parse


def ipv6Address(value: Any) -> str:
    try:
        return str(ipaddress.IPv6Address(string(value)))
    except ipaddress.AddressValueError as e:
        raise ValueError(f"expected an IPv6 address, got {value!r}") from e


def ipv6Prefix(value: Any) -> ipaddress.IPv6Network:
    try:
        return ipaddress.IPv6Network(string(value), strict=True)
    except ValueError as e:
        raise ValueError(
            f"expected an IPv6 prefix like 2001:db8:1::/64, got {value!r} ({e})"
        ) from e


#: Six pairs of hex digits, colons between (lowercase: macAddress lowers first).
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def macAddress(value: Any) -> str:
    text = string(value).lower()
    if _MAC.fullmatch(text) is None:
        raise ValueError(f"expected a MAC address like 02:00:00:00:00:01, got {value!r}")
    return text


def listOf(parse: Parser, minimum: int = 0) -> Parser:
    def parseList(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        if len(value) < minimum:
            raise ValueError(f"expected at least {minimum} item(s)")
        result = []
        for index, item in enumerate(value):
            try:
                result.append(parse(item))
            except ValueError as e:
                raise ValueError(f"item {index}: {e}") from e
        return result

    return parseList


def table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table, got {value!r}")
    return value


# --- loading ----------------------------------------------------------------


def _flatten(
    data: Mapping[str, Any], prefix: str, tables: set[str]
) -> Iterable[tuple[str, Any]]:
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in tables:
            yield from _flatten(value, key + ".", tables)
        else:
            yield key, value


def parseDocument(
    path: str, document: Mapping[str, Any], settings: Sequence[Setting]
) -> dict[str, Any]:
    """Check a parsed TOML document; return every setting's value by key."""
    known = {s.key: s for s in settings}
    tables = {s.key for s in settings if s.table}
    given = dict(_flatten(document, "", tables))
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(path, key, f"unknown key{hint}")
    values: dict[str, Any] = {}
    for setting in settings:
        if setting.key not in given:
            if setting.default is REQUIRED:
                raise ConfigError(path, setting.key, f"missing (required: {setting.help})")
            values[setting.key] = setting.default
            continue
        try:
            values[setting.key] = setting.parse(given[setting.key])
        except ValueError as e:
            raise ConfigError(path, setting.key, str(e)) from None
    return values


def readToml(path: str) -> dict[str, Any]:
    """The TOML document at C{path}; L{ConfigError} when it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from None


def load(path: str, settings: Sequence[Setting]) -> dict[str, Any]:
    """Read and check the TOML file at C{path}."""
    return parseDocument(path, readToml(path), settings)


def describe(settings: Sequence[Setting]) -> str:
    """A listing of the settings, for --help and docs."""
    lines = []
    for s in settings:
        if s.default is REQUIRED:
            default = "required"
        elif s.default is None:
            default = "optional"
        else:
            default = f"default {s.default!r}"
        lines.append(f"  {s.key:40} {s.help} ({default})")
    return "\n".join(lines)


def tomlValue(value: Any) -> str:
    """C{value} as TOML writes it (for answers and hints: what to put in the file)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(tomlValue(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {tomlValue(v)}" for k, v in value.items()) + "}"
    return str(value)  # dates and times: their isoformat, as TOML writes them


def writeToml(path: str, tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Write {"lmap": {"address": ...}, "aaa.options": {...}} as a TOML file, a
    table each; C{path}."""
    with open(path, "w") as f:
        for name, table in tables.items():
            f.write(f"[{name}]\n")
            for key, value in table.items():
                f.write(f"{key} = {tomlValue(value)}\n")
            f.write("\n")
    return path
