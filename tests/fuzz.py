"""A mutator of Label Studio's captured requests (for tests/integration/test_fuzz.py).

Seeded from ``tests/fixtures/ls-captures`` (every webhook, /predict and /setup body Label Studio
1.23.2 sent), each case applies one to three mutations: structural ones on the parsed body
(a field deleted, retyped, replaced by a hostile value: huge ids, non-ISO times, deep nesting,
long strings, NUL and astral characters; a list repeated; a key added) and byte-level ones on
the serialized body (truncated, a byte-order mark, trailing bytes, a flipped or invalid UTF-8
byte, a duplicated chunk). Byte edits never touch the project's secret keys and values, so a
case that still carries a secret carries it as Label Studio would, with its key.
"""

from __future__ import annotations

import copy
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

from tests.helpers import CAPTURES

SECRET_VALUES = {"token": "SEEDTOKENSECRET-41e7", "task_data_password": "SEEDPASSWORD-c3d9",
                 "task_data_login": "SEEDLOGIN-88aa"}
_SECRET_SPAN = re.compile(rb'"(?:token|task_data_password|task_data_login)":"[^"]*"')


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE: list[Any] = [None, True, False, 0, -1, 2 ** 31, 2 ** 53 + 1, 2 ** 63, 2 ** 64 - 1,
                      -(2 ** 63) - 1, 10 ** 30, 1.5, -0.0, 1e308, "", " ", "yesterday",
                      "2026-02-30T25:61:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z",
                      "x" * 20_000, "\u0000", "\ud83d\udca5" * 50, "<View/>", "<View><Nope",
                      "../../etc/passwd", "%00", "1.2.3", [], {}, [None], [[]], {"": {}},
                      _deep(40), _deep(120), _deep(400)]


@dataclass(frozen=True)
class Seed:
    path: str          # endpoint
    body: Any


def seeds() -> list[Seed]:
    out = []
    for f in sorted(CAPTURES.rglob("*.json")):
        data = json.loads(f.read_text())
        if not isinstance(data, dict) or data.get("method") != "POST":
            continue
        body = data.get("json", data.get("body"))
        if not isinstance(body, dict):
            continue
        path = "/" + data["path"].strip("/").split("/")[-1]
        path = {"/lshook": "/webhook", "/hook": "/webhook"}.get(path, path)
        if path not in ("/webhook", "/predict", "/setup"):
            continue
        if isinstance(body.get("project"), dict):
            body["project"].update(SECRET_VALUES)
        out.append(Seed(path, body))
    return out


def _paths(value: Any, limit: int = 400) -> list[list]:
    """Some paths into the value (breadth first, bounded)."""
    out: list[list] = [[]]
    queue = [([], value)]
    while queue and len(out) < limit:
        path, node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for k, v in items:
            out.append([*path, k])
            if isinstance(v, (dict, list)) and len(path) < 12:
                queue.append(([*path, k], v))
    return out


def _at(root: Any, path: list) -> Any:
    for p in path:
        root = root[p]
    return root


class Mutator:
    def __init__(self, seed: int = 16) -> None:
        self.rng = random.Random(seed)
        self.seeds = seeds()

    def cases(self, n: int) -> Iterator[tuple[str, bytes]]:
        for _ in range(n):
            seed = self.rng.choice(self.seeds)
            body = copy.deepcopy(seed.body)
            for _ in range(self.rng.randint(1, 3)):
                body = self._structural(body)
            raw = self._dumps(body)
            if self.rng.random() < 0.3:
                raw = self._bytes(raw)
            yield seed.path, raw

    def _dumps(self, body: Any) -> bytes:
        try:
            return orjson.dumps(body)
        except (TypeError, orjson.JSONEncodeError):   # deeper than orjson writes
            return json.dumps(body, separators=(",", ":")).encode()

    def _structural(self, body: Any) -> Any:
        rng = self.rng
        path = rng.choice(_paths(body))
        if not path:
            return rng.choice([[body], "x", None, body])
        parent, key = _at(body, path[:-1]), path[-1]
        if isinstance(parent, dict) and key in SECRET_VALUES and parent.get(key) in \
                SECRET_VALUES.values():
            return body                              # keep the secrets as Label Studio sends them
        choice = rng.random()
        if choice < 0.25 and isinstance(parent, dict):
            del parent[key]
        elif choice < 0.75:
            parent[key] = copy.deepcopy(rng.choice(HOSTILE))
        elif choice < 0.85 and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] * rng.choice([2, 50, 300])
        elif choice < 0.92 and isinstance(parent, dict):
            parent[rng.choice(["id", "action", "task", "data", "result", "extra", "\u00e9"])] = \
                copy.deepcopy(rng.choice(HOSTILE))
        else:
            value = parent[key]
            parent[key] = list(value.values()) if isinstance(value, dict) else {"v": value}
        return body

    def _bytes(self, raw: bytes) -> bytes:
        rng = self.rng
        protected = [m.span() for m in _SECRET_SPAN.finditer(raw)]

        def free(i: int) -> bool:
            return not any(a <= i < b for a, b in protected)
        kind = rng.choice(["truncate", "bom", "trailing", "flip", "utf8", "dup", "empty"])
        i = rng.randrange(len(raw) or 1)
        if kind == "truncate":
            return raw[:i]
        if kind == "bom":
            return b"\xef\xbb\xbf" + raw
        if kind == "trailing":
            return raw + rng.choice([b"x", b"\x00", b"}", b" {}", raw[:50]])
        if kind == "empty":
            return b""
        if not free(i):
            return raw[:i]
        if kind == "flip":
            return raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1:]
        if kind == "utf8":
            return raw[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + raw[i:]
        j = min(len(raw), i + rng.randrange(1, 200))
        return raw[:j] + raw[i:j] + raw[j:] if all(free(k) for k in (i, j - 1)) else raw
