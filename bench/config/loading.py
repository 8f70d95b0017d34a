"""Reading a suite file: safe YAML (no Python tags, no key given twice), validated by the schema.

Every failure becomes a `ConfigError` that names the file, the key and the fix, so the CLI can
print one line and exit 2 before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .schema import Suite


_FIXES = {
    "extra_forbidden": "remove the key or correct its spelling",
    "missing": "add the key",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "too_short": "list at least one entry",
    "literal_error": "use one of the allowed values",
}


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "VariantSpec", "ScenarioSpec"):  # union branch names, not keys
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _config_error(path: str, exc: ValidationError) -> ConfigError:
    errors = exc.errors()
    # For `str | VariantSpec`, pydantic reports both branches; the object branch is more useful.
    err = next((e for e in errors if {"VariantSpec", "ScenarioSpec"} & set(map(str, e["loc"]))), errors[0])
    kind = err["type"]
    fix = _FIXES.get(kind, "see README.md for the suite schema")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        fix = f"give a value of the expected type ({err['msg'].lower()})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(path, _key_path(err["loc"]), err["msg"] + more, fix)


class DuplicateKey(Exception):
    """A mapping gives one key more than once; `marks` are where each occurrence starts."""

    def __init__(self, key_path: str, marks: list):
        super().__init__(key_path)
        self.key_path, self.marks = key_path, marks

    def places(self) -> str:
        """Each occurrence's line, and its column where two share a line (flow style)."""
        lines = [m.line + 1 for m in self.marks]
        if len(set(lines)) == len(lines):
            return ", ".join(f"line {line}" for line in lines)
        return ", ".join(f"line {m.line + 1} column {m.column + 1}" for m in self.marks)


class UniqueKeySafeLoader(yaml.SafeLoader):
    """The safe loader (plain values only: Python tags still raise), refusing a key given twice in one mapping,
    at any depth, block or flow style: PyYAML would keep the last one without a word."""

    def construct_document(self, node):
        self._refuse_duplicate_keys(node, "", set())
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias of a node already walked (or a recursive one)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._refuse_duplicate_keys(item, f"{path}[{i}]", seen)
        elif isinstance(node, yaml.MappingNode):
            marks: dict[Any, list] = {}
            children = []
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<` merges may be overridden by the mapping's own keys, as YAML intends
                key = self.construct_object(key_node)  # equal as PyYAML judges them: `1` and `0x1` are one key
                marks.setdefault(key, []).append(key_node.start_mark)
                children.append((f"{path}.{key}" if path else str(key), key, value_node))
            for child_path, key, _ in children:
                if len(marks[key]) > 1:
                    raise DuplicateKey(child_path, marks[key])
            for child_path, _, value_node in children:
                self._refuse_duplicate_keys(value_node, child_path, seen)


def parse_yaml(path: Path) -> Any:
    """Read YAML with the safe loader: tags that construct Python objects raise, run nothing, and a key given
    twice is refused rather than silently reduced to its last value."""
    if not path.exists():
        raise ConfigError(str(path), "(file)", "suite file not found", "check the path, or run `bench run` for the default suite")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc}", "make the file readable UTF-8 text") from None
    try:
        return yaml.load(text, Loader=UniqueKeySafeLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKey as exc:
        raise ConfigError(str(path), exc.key_path, f"key given {len(exc.marks)} times ({exc.places()})",
                          "keep one of them: YAML would silently use the last") from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(str(path), where, f"unsupported YAML tag ({exc.problem})",
                          "remove the tag: suites hold plain values only") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), where, f"invalid YAML: {problem}", "fix the YAML syntax at that position") from None


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    data = parse_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(top level)", "a suite must be a mapping of keys to values",
                          "start from bench/suites/quickstart.yaml")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise _config_error(str(path), exc) from None
    if suite.name is None:
        suite.name = path.stem
    # a file named relative to the suite is found from wherever the suite runs, children included
    suite.extensions = [str((path.parent / e).resolve()) if e.endswith(".py") else e for e in suite.extensions]
    return suite
