"""A small, strict GraphQL reader for the Labelbox stand-in.

It parses the subset of GraphQL the labelbox SDK sends (operations with variables, nested
selections, arguments with literal or variable values, inline fragments) and projects resolver
results onto the selection *strictly*: a selected field that the stand-in does not know is an
error (``GRAPHQL_VALIDATION_FAILED``), never a silent ``null``.

Resolver results are plain dicts. A value that is callable is a field with arguments (or a lazy
relationship); it is called with the field's resolved argument dict. The optional key
``__typename`` names the object type in error messages. Dicts without ``__typename`` that are
selected without a sub-selection are returned verbatim (JSON scalars such as ``normalized``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["GQLError", "Field", "Operation", "parse", "project"]


class GQLError(Exception):
    """An error reported in the GraphQL ``errors`` array (HTTP 200)."""

    def __init__(self, message: str, code: str = "GRAPHQL_VALIDATION_FAILED",
                 status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def as_json(self, path: list | None = None) -> dict:
        ext: dict[str, Any] = {"code": self.code}
        if self.status is not None:
            ext["exception"] = {"status": self.status}
        err: dict[str, Any] = {"message": self.message, "extensions": ext}
        if path:
            err["path"] = path
        return err


@dataclass
class Field:
    name: str
    alias: str | None = None
    args: dict = field(default_factory=dict)
    selections: list | None = None  # list[Field] | None

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Operation:
    kind: str  # "query" | "mutation"
    name: str | None
    fields: list  # list[Field]


_TOKEN = re.compile(r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n]*) |
    (?P<spread>\.\.\.) |
    (?P<punct>[!$():=@\[\]{}|&]) |
    (?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\") |
    (?P<string>"(?:\\.|[^"\\\n])*") |
    (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?) |
    (?P<name>[_A-Za-z][_0-9A-Za-z]*)
""", re.VERBOSE)

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            if n == "u":
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES[n])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos, toks = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise GQLError(f"Syntax Error: unexpected character {text[pos]!r} at {pos}",
                           "GRAPHQL_PARSE_FAILED")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        toks.append((kind, m.group()))
    toks.append(("eof", ""))
    return toks


class _Parser:
    def __init__(self, text: str, variables: dict):
        self.toks = _tokenize(text)
        self.i = 0
        self.variables = variables or {}
        self.declared: dict[str, Any] = {}

    # -- token helpers
    def peek(self, ahead: int = 0) -> tuple[str, str]:
        return self.toks[self.i + ahead]

    def next(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, val = self.next()
        if val != value or kind == "string":
            raise GQLError(f"Syntax Error: expected {value!r}, found {val!r}", "GRAPHQL_PARSE_FAILED")

    def accept(self, value: str) -> bool:
        kind, val = self.peek()
        if val == value and kind in ("punct", "spread"):
            self.i += 1
            return True
        return False

    def name(self) -> str:
        kind, val = self.next()
        if kind != "name":
            raise GQLError(f"Syntax Error: expected a name, found {val!r}", "GRAPHQL_PARSE_FAILED")
        return val

    # -- grammar
    def document(self) -> Operation:
        op = None
        while self.peek()[0] != "eof":
            kind, val = self.peek()
            if kind == "name" and val == "fragment":
                raise GQLError("stand-in: named fragments are not supported")
            if op is not None:
                raise GQLError("stand-in: documents with several operations are not supported")
            op = self.operation()
        if op is None:
            raise GQLError("Syntax Error: empty document", "GRAPHQL_PARSE_FAILED")
        return op

    def operation(self) -> Operation:
        kind, val = self.peek()
        if kind == "punct" and val == "{":
            return Operation("query", None, self.selection_set())
        op_kind = self.name()
        if op_kind not in ("query", "mutation", "subscription"):
            raise GQLError(f"Syntax Error: unexpected {op_kind!r}", "GRAPHQL_PARSE_FAILED")
        op_name = None
        if self.peek()[0] == "name":
            op_name = self.name()
        if self.accept("("):
            while not self.accept(")"):
                self.expect("$")
                var = self.name()
                self.expect(":")
                self.type_ref()
                default = None
                has_default = False
                if self.accept("="):
                    default = self.value(const=True)
                    has_default = True
                self.declared[var] = (has_default, default)
        self.directives()
        return Operation(op_kind, op_name, self.selection_set())

    def type_ref(self) -> None:
        if self.accept("["):
            self.type_ref()
            self.expect("]")
        else:
            self.name()
        self.accept("!")

    def directives(self) -> None:
        while self.accept("@"):
            self.name()
            if self.peek() == ("punct", "("):
                self.arguments()

    def selection_set(self) -> list:
        self.expect("{")
        out: list[Field] = []
        while not self.accept("}"):
            if self.accept("..."):
                if self.peek() == ("name", "on"):
                    self.next()
                    self.name()
                    self.directives()
                    out.extend(self.selection_set())
                    continue
                raise GQLError("stand-in: fragment spreads are not supported")
            out.append(self.field())
        if not out:
            raise GQLError("Syntax Error: empty selection set", "GRAPHQL_PARSE_FAILED")
        return out

    def field(self) -> Field:
        first = self.name()
        alias = None
        if self.accept(":"):
            alias, first = first, self.name()
        args = self.arguments() if self.peek() == ("punct", "(") else {}
        self.directives()
        sels = self.selection_set() if self.peek() == ("punct", "{") else None
        return Field(first, alias, args, sels)

    def arguments(self) -> dict:
        self.expect("(")
        args = {}
        while not self.accept(")"):
            key = self.name()
            self.expect(":")
            args[key] = self.value()
        return args

    def value(self, const: bool = False) -> Any:
        kind, val = self.next()
        if kind == "punct" and val == "$" and not const:
            var = self.name()
            if var not in self.declared:
                raise GQLError(f'Variable "${var}" is not defined.')
            if var in self.variables:
                return self.variables[var]
            has_default, default = self.declared[var]
            return default if has_default else None
        if kind == "number":
            return float(val) if any(c in val for c in ".eE") else int(val)
        if kind == "string":
            return _unescape(val[1:-1])
        if kind == "block":
            return val[3:-3].replace('\\"""', '"""')
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(val, val)  # enums as str
        if kind == "punct" and val == "[":
            items = []
            while not self.accept("]"):
                items.append(self.value(const))
            return items
        if kind == "punct" and val == "{":
            obj = {}
            while not self.accept("}"):
                key = self.name()
                self.expect(":")
                obj[key] = self.value(const)
            return obj
        raise GQLError(f"Syntax Error: unexpected {val!r}", "GRAPHQL_PARSE_FAILED")


def parse(text: str, variables: dict | None = None) -> Operation:
    """Parse one GraphQL operation, substituting ``variables`` into its arguments."""
    return _Parser(text, variables or {}).document()


def project(value: Any, selections: list | None, where: str = "Query") -> Any:
    """Project a resolver result onto ``selections`` (strict, see module docstring)."""
    if isinstance(value, list):
        return [project(v, selections, where) for v in value]
    if selections is None:
        if isinstance(value, dict) and "__typename" in value:
            raise GQLError(f'stand-in: field "{where}" of type {value["__typename"]} '
                           "must have a selection of subfields")
        return value
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GQLError(f'stand-in: field "{where}" is a scalar and cannot have a selection')
    typename = value.get("__typename", where)
    out: dict[str, Any] = {}
    for f in selections:
        if f.name == "__typename":
            out[f.key] = typename
            continue
        if f.name not in value:
            raise GQLError(f'stand-in: unsupported field "{f.name}" on type {typename}')
        v = value[f.name]
        if callable(v):
            v = v(f.args)
        elif f.args:
            raise GQLError(f'stand-in: field "{f.name}" on type {typename} takes no arguments')
        out[f.key] = project(v, f.selections, f"{typename}.{f.name}")
    return out


Resolver = Callable[[dict], Any]
