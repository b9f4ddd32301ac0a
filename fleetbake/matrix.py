"""Load and validate the matrix file: operating systems (rows) x build configurations.

Validation is pydantic's; this module adds what a YAML user needs on top: the
line of every error, duplicate keys (PyYAML silently keeps the last one), and
cross-references between rows and configurations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .errors import UsageError

DEFAULT_MATRIX = "matrix.yml"


class MatrixError(UsageError):
    """One line: `file:line: field: reason`."""

    def __init__(self, path: str | Path, line: int | None, field: str, reason: str):
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")


# Values end up in a Dockerfile, a shell script or a command line, so each kind
# gets the narrowest pattern that still admits every real value.
def _pattern(regex: str, what: str):
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not a safe {what} (allowed: {regex})")
        return value

    return AfterValidator(check)


Name = Annotated[str, _pattern(r"[a-z0-9][a-z0-9.-]{0,62}", "name")]
Package = Annotated[str, _pattern(r"[A-Za-z0-9][A-Za-z0-9+._-]*(=[A-Za-z0-9.+~:-]+)?", "package name")]
Flag = Annotated[str, _pattern(r"[A-Za-z0-9_.,:=+/@%-]+", "configure flag")]
EnvName = Annotated[str, _pattern(r"[A-Z_][A-Z0-9_]*", "environment variable name")]
EnvValue = Annotated[str, _pattern(r"[A-Za-z0-9_.,:=+/@%-]*", "environment value")]
TestName = Annotated[str, _pattern(r"[A-Za-z_][A-Za-z0-9_.]*", "test name")]
ImageRef = Annotated[
    str, _pattern(r"[a-z0-9]+(?:[._/:-][A-Za-z0-9]+)*(?:@sha256:[0-9a-f]{64})?", "image reference")
]
Url = Annotated[str, _pattern(r"https?://[A-Za-z0-9._~:/%-]+", "mirror URL")]
Version = Annotated[str, _pattern(r"[0-9]+(?:\.[0-9]+){1,2}(?:[a-z]+[0-9]*)?", "version")]
PythonVersion = Annotated[str, _pattern(r"3\.[0-9]{1,2}", "Python version")]
SourceSpec = Annotated[str, _pattern(r"debian:[a-z]+/python3\.[0-9]+", "CPython source")]
Reason = Annotated[str, Field(min_length=3)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Configuration(_Strict):
    description: str = ""
    configure: list[Flag] = []
    env: dict[EnvName, EnvValue] = {}
    install: bool = False
    smoke: list[TestName] | None = None
    requires_python: PythonVersion | None = None
    timeout_factor: float = Field(default=1.0, gt=0, le=10)


class Bootstrap(_Strict):
    suite: Name
    mirror: Url
    security_mirror: Url | None = None


class Ami(_Strict):
    """The AMI target (invoke packer --target ami)."""

    instance_type: Annotated[str, _pattern(r"[a-z0-9]+\.[a-z0-9]+", "instance type")] = "m5.large"
    source_ami_name: Annotated[str, _pattern(r"[A-Za-z0-9_.*-]+", "AMI name filter")]
    source_ami_owner: Annotated[str, _pattern(r"[0-9]{12}|amazon", "AMI owner")]
    ssh_username: Name = "admin"
    volume_gb: int = Field(default=30, ge=30, le=16384)  # the devguide's 30 GB at least


class Row(_Strict):
    family: Literal["debian", "fedora", "windows"]
    # Where the nightly workflow builds it (a GitHub-hosted runner label).
    runner: Literal["ubuntu-24.04", "windows-2022"] = "ubuntu-24.04"
    base: ImageRef
    bootstrap: Bootstrap | None = None
    packages: list[Package] = Field(min_length=1)
    extra_packages: list[Package] = []
    worker_version: Version = "4.3.0"
    user: Name = "buildbot"
    uid: int = Field(default=1000, ge=1000, le=60000)
    configurations: list[Name] = Field(min_length=1)
    cpython: SourceSpec | None = None
    ami: Ami | None = None
    # Optional modules that may stay unbuilt on this row: module -> reason.
    missing_ok: dict[Name, Reason] = {}


class _Schema(_Strict):
    smoke: list[TestName] = []
    configurations: dict[Name, Configuration] = Field(min_length=1)
    rows: dict[Name, Row] = Field(min_length=1)


@dataclass(frozen=True)
class RowView:
    """A row with its name and its resolved configurations."""

    name: str
    spec: Row
    configurations: dict[str, Configuration]

    @property
    def all_packages(self) -> list[str]:
        return list(dict.fromkeys([*self.spec.packages, *self.spec.extra_packages]))

    def to_json(self) -> dict[str, Any]:
        return {
            "os": self.name,
            "family": self.spec.family,
            "base": self.spec.base,
            "worker_version": self.spec.worker_version,
            "runner": self.spec.runner,
            "configurations": list(self.configurations),
        }


@dataclass(frozen=True)
class Matrix:
    path: Path
    rows: dict[str, RowView]
    text: str  # the file as read, for input hashing

    def select(self, os_name: str | None) -> list[RowView]:
        """`all` (or None) gives every row; otherwise the named one."""
        if os_name in (None, "all"):
            return list(self.rows.values())
        if os_name not in self.rows:
            raise MatrixError(
                self.path, None, "--os", f"unknown row {os_name!r} (known: {', '.join(self.rows)})"
            )
        return [self.rows[os_name]]

    def one(self, os_name: str) -> RowView:
        """The named row, for tasks that work on a single one."""
        if os_name in (None, "all"):
            raise MatrixError(self.path, None, "--os", f"this task takes one row, not 'all' (known: {', '.join(self.rows)})")
        return self.select(os_name)[0]

    def configurations(self, row: RowView, config: str | None) -> list[str]:
        if config in (None, "all"):
            return list(row.configurations)
        if config not in row.configurations:
            raise MatrixError(
                self.path,
                None,
                "--config",
                f"row {row.name} has no configuration {config!r} (known: {', '.join(row.configurations)})",
            )
        return [config]

    def to_json(self) -> str:
        # One line: CI writes it straight into $GITHUB_OUTPUT.
        return json.dumps([r.to_json() for r in self.rows.values()], separators=(",", ":"))

    def table(self) -> str:
        names = list(dict.fromkeys(c for r in self.rows.values() for c in r.configurations))
        header = ["row", "base", "worker", *names]
        lines = [header]
        for row in self.rows.values():
            marks = ["x" if c in row.configurations else "-" for c in names]
            lines.append([row.name, row.spec.base, row.spec.worker_version, *marks])
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


# --- YAML with line numbers -------------------------------------------------


class _Loader(yaml.SafeLoader):
    pass


def _check_duplicates(node: yaml.Node, path: str, file: Path, seen_nodes: set[int]) -> None:
    if id(node) in seen_nodes:  # aliases share nodes
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line = key.start_mark.line + 1
            if name in first:
                raise MatrixError(
                    file, line, path or "(top)", f"duplicate key {name!r} (first on line {first[name]})"
                )
            first[name] = line
            _check_duplicates(value, _join(path, name), file, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicates(item, f"{path}[{index}]", file, seen_nodes)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _line_of(root: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The line of the deepest node that `loc` reaches."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _field(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, part)
    return path


def _reason(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"].endswith("_type") or error["type"] == "model_type":
        return f"{message.lower()}, got {type(error['input']).__name__}"
    return message


def load(path: str | Path = DEFAULT_MATRIX) -> Matrix:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MatrixError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise MatrixError(path, None, "", "file is empty")
        _check_duplicates(root, "", path, set())
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise MatrixError(path, line, "", f"malformed YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise MatrixError(path, root.start_mark.line + 1, "", "top level must be a mapping")
    try:
        schema = _Schema.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        raise MatrixError(path, _line_of(root, loc), _field(loc), _reason(error)) from None
    return Matrix(path=path, rows=_resolve(schema, path, root), text=text)


def _resolve(schema: _Schema, path: Path, root: yaml.Node) -> dict[str, RowView]:
    for name, config in schema.configurations.items():
        if not (config.smoke or schema.smoke):
            loc = ("configurations", name)
            raise MatrixError(path, _line_of(root, loc), _field(loc), "no smoke tests (set `smoke`)")
    rows = {}
    for row_name, row in schema.rows.items():
        configs = {}
        for index, config_name in enumerate(row.configurations):
            loc = ("rows", row_name, "configurations", index)
            if config_name not in schema.configurations:
                known = ", ".join(schema.configurations)
                raise MatrixError(
                    path, _line_of(root, loc), _field(loc), f"unknown configuration {config_name!r} (known: {known})"
                )
            if config_name in configs:
                raise MatrixError(path, _line_of(root, loc), _field(loc), f"{config_name!r} is listed twice")
            config = schema.configurations[config_name]
            if config.smoke is None:
                config = config.model_copy(update={"smoke": list(schema.smoke)})
            configs[config_name] = config
        rows[row_name] = RowView(row_name, row, configs)
    return rows
