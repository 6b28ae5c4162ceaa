"""YAML loading that remembers where everything came from.

Contract:
- Mappings load as ``NodeDict`` and sequences as ``NodeList``; both know the file and line of themselves
  and of each key/item, so every later error can say ``config.yaml:12``.
- ``!secret name`` reads ``secrets.yaml`` beside the top-level config; ``!include file.yaml`` loads another
  file relative to the including one; ``!env_var NAME [default]`` reads the environment. Values from
  ``!secret`` and ``!env_var`` are ``SecretStr``, so the policy layer can tell a secret written in clear
  (AUTH-004) from one kept out of the config.
- Duplicate keys, tabs, unknown tags, a missing secret or variable, and include loops all raise
  ``YamlError`` with file and line. Nothing here executes code (SafeLoader underneath).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SECRETS_FILE = "secrets.yaml"


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class YamlError(Exception):
    def __init__(self, mark: Mark | None, message: str, fix: str = "") -> None:
        self.mark = mark
        self.message = message
        self.fix = fix
        where = f"{mark}: " if mark else ""
        super().__init__(f"{where}{message}" + (f" — fix: {fix}" if fix else ""))


class SecretStr(str):
    """A string that came from ``!secret`` or ``!env_var``: never written in clear in the config."""

    __slots__ = ("source",)
    source: str

    def __new__(cls, value: str, source: str) -> SecretStr:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj

    def __repr__(self) -> str:
        return f"<secret {self.source}>"


class NodeDict(dict[str, Any]):
    """A mapping with the position of itself and of each key."""

    mark: Mark | None = None
    key_marks: dict[str, Mark]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_marks = {}


class NodeList(list[Any]):
    mark: Mark | None = None
    item_marks: list[Mark]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_marks = []


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.name, node.start_mark.line + 1)


class _Loader(yaml.SafeLoader):
    # Set per file by load_yaml(); the include stack lets !include detect loops.
    include_stack: tuple[Path, ...] = ()
    secrets_dir: Path = Path(".")
    secrets_cache: dict[Path, Any]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> NodeDict:
    loader.flatten_mapping(node)
    result = NodeDict()
    result.mark = _mark(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) or key is None:
            raise YamlError(_mark(key_node), f"a key must be a plain value, got {type(key).__name__}")
        key = str(key)
        if key in result:
            raise YamlError(
                _mark(key_node),
                f"duplicate key '{key}' (first at line {result.key_marks[key].line})",
                "keep one of them",
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = _mark(key_node)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> NodeList:
    result = NodeList()
    result.mark = _mark(node)
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_marks.append(_mark(item))
    return result


def _secret(loader: _Loader, node: yaml.Node) -> SecretStr:
    name = loader.construct_scalar(node)  # type: ignore[arg-type]
    path = loader.secrets_dir / SECRETS_FILE
    if path not in loader.secrets_cache:
        if not path.exists():
            raise YamlError(_mark(node), f"!secret {name}: no {SECRETS_FILE} beside the config ({path})",
                            f"create {path} with a line '{name}: ...' (mode 0600)")
        loader.secrets_cache[path] = load_yaml(path, _secrets=loader.secrets_cache)
    secrets = loader.secrets_cache[path]
    if not isinstance(secrets, dict) or name not in secrets:
        raise YamlError(_mark(node), f"!secret {name}: not found in {path}", f"add '{name}: ...' to {path}")
    return SecretStr(str(secrets[name]), f"!secret {name}")


def _env_var(loader: _Loader, node: yaml.Node) -> SecretStr:
    args = str(loader.construct_scalar(node)).split(None, 1)  # type: ignore[arg-type]
    if not args:
        raise YamlError(_mark(node), "!env_var needs a variable name", "write '!env_var NAME [default]'")
    name = args[0]
    value = os.environ.get(name, args[1] if len(args) > 1 else None)
    if value is None:
        raise YamlError(_mark(node), f"!env_var {name}: the variable is not set and has no default",
                        f"export {name}=... or write '!env_var {name} default'")
    return SecretStr(value, f"!env_var {name}")


def _include(loader: _Loader, node: yaml.Node) -> Any:
    rel = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    base = loader.include_stack[-1].parent if loader.include_stack else Path(".")
    path = (base / rel).resolve()
    if path in loader.include_stack:
        chain = " -> ".join(p.name for p in (*loader.include_stack, path))
        raise YamlError(_mark(node), f"!include loop: {chain}", "remove one of the includes")
    if not path.exists():
        raise YamlError(_mark(node), f"!include {rel}: file not found ({path})", "check the path")
    return load_yaml(path, _stack=loader.include_stack, _secrets_dir=loader.secrets_dir,
                     _secrets=loader.secrets_cache)


def _unknown_tag(loader: _Loader, suffix: str, node: yaml.Node) -> None:
    raise YamlError(_mark(node), f"unknown tag '{node.tag}'", "use !secret, !include or !env_var")


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_Loader.add_constructor("!secret", _secret)
_Loader.add_constructor("!env_var", _env_var)
_Loader.add_constructor("!include", _include)
_Loader.add_multi_constructor("!", _unknown_tag)
_Loader.add_multi_constructor("tag:", _unknown_tag)


def load_yaml(
    path: Path | str,
    *,
    _stack: tuple[Path, ...] = (),
    _secrets_dir: Path | None = None,
    _secrets: dict[Path, Any] | None = None,
) -> Any:
    """Load one YAML file with our tags; raises ``YamlError`` with file:line on any problem."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise YamlError(None, f"cannot read {path}: {err.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise YamlError(Mark(path.name, 1), "not UTF-8 text", "save the file as UTF-8") from None
    loader = _Loader(text)
    loader.include_stack = (*_stack, path)
    loader.secrets_dir = _secrets_dir or path.parent
    loader.secrets_cache = _secrets if _secrets is not None else {}
    # Marks name the file as the user wrote it, relative to where the top-level config lives.
    try:
        loader.name = str(path.relative_to(loader.secrets_dir))
    except ValueError:
        loader.name = str(path)
    try:
        return loader.get_single_data()
    except YamlError:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Mark(loader.name, mark.line + 1) if mark else None
        problem = err.problem or err.context or "invalid YAML"
        if "\t" in problem or "\\t" in problem:
            problem, fix = "a tab character where YAML needs spaces", "indent with spaces, never tabs"
        else:
            fix = "check the indentation and quoting on this line"
        raise YamlError(where, problem, fix) from None
    except yaml.YAMLError as err:
        raise YamlError(Mark(loader.name, 1), str(err), "check the YAML syntax") from None
    finally:
        loader.dispose()
