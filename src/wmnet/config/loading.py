"""Loading a config: YAML files, dotted `key=value` overrides, merging onto the defaults, and one-line
validation errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from wmnet.config.run import Config
from wmnet.errors import WmnetError


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if not loc:  # model-level errors name their fields in the message itself
        return f"{source}: {msg}{more}"
    return f"{source}: {loc}: {msg}{more}"


def _cyclic(obj: Any, path: tuple[int, ...] = ()) -> bool:
    """True if a YAML document (dicts and lists) contains itself (a self-referencing anchor)."""
    if not isinstance(obj, (dict, list)):
        return False
    if id(obj) in path:
        return True
    inner = (*path, id(obj))
    return any(_cyclic(v, inner) for v in (obj.values() if isinstance(obj, dict) else obj))


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if _cyclic(value):
        raise WmnetError(f"--set {text!r}: a YAML anchor refers to itself; a value must be a tree")
    return value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Set `dotted.key=value` in a nested dict; the value is parsed as YAML."""
    if "=" not in assignment:
        raise WmnetError(f"--set {assignment!r}: expected dotted.key=value")
    key, _, value = assignment.partition("=")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    parsed = _parse_value(value)
    if parts[-1] == "kind" and node.get("kind", parsed) != parsed:
        node.clear()  # a new kind: the old kind's fields no longer apply
    node[parts[-1]] = parsed


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`; a mapping whose `kind` changes is replaced."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults), apply `key=value` overrides, and validate.

    Raises WmnetError with a one-line message naming the file and field on bad input.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise WmnetError(f"{path}: cannot read config ({e.strerror})") from None
        except UnicodeDecodeError as e:
            raise WmnetError(
                f"{path}: not a UTF-8 text file (byte {e.object[e.start]:#04x} at offset {e.start}); "
                "save the config as UTF-8"
            ) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise WmnetError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
        if _cyclic(loaded):
            raise WmnetError(f"{path}: a YAML anchor refers to itself (e.g. `a: &x [*x]`); a config must be a tree")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise WmnetError(f"{path}: expected a mapping of config keys at the top level")
        data = loaded
    base = Config().to_dict()
    base.pop("duration")  # unset unless given: a protocol sets it
    if overrides:
        data = json.loads(json.dumps(data))  # private copy
        for assignment in overrides:
            apply_override(data, assignment)
        source += " (with --set)" if path is not None else " --set"
    try:
        return Config.model_validate(_merge(base, data))
    except ValidationError as e:
        raise WmnetError(_format_validation_error(e, source)) from None
