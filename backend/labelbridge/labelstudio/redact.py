"""Secrets out of Label Studio bodies and headers before anything is stored or logged.

Label Studio embeds the project in every webhook body, with its invite ``token`` and the
credentials it uses to fetch task data (``task_data_login``/``task_data_password``); ``/setup``
carries an ``access_token`` and ``/predict`` the same credentials under ``params``. A body that
parses is cleaned structurally, at any depth; one that does not (truncated, a byte-order mark,
trailing bytes, not JSON at all) is scanned as bytes: the value after every secret key is
replaced, and where a value cannot be delimited (an object, an array) the body is cut there.
Headers are kept by an allow-list, never by a deny-list.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

REDACTED = "<redacted>"
SECRET_KEYS = frozenset({"token", "task_data_login", "task_data_password", "access_token",
                         "password", "login", "api_key", "apikey", "secret", "authorization",
                         "basic_auth_pass", "refresh", "refresh_token"})
# Request headers worth keeping with a rejected body: none of them carries a credential.
KEPT_HEADERS = frozenset({"content-type", "content-length", "content-encoding",
                          "transfer-encoding", "user-agent", "x-request-id", "x-forwarded-for",
                          "x-real-ip"})
MAX_HEADER_VALUE = 256
RAW_PREFIX = 64 << 10   # of a refused body that is not JSON, at most this much is kept
KEPT_DEPTH = 200        # a refused body handed over parsed is kept to this depth (orjson: 254)
CUT = "<cut: nested too deep>"

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', re.S)
_SPACE = re.compile(rb"\s*")
_SCALAR = re.compile(rb"[^,}\]\s]*")
# name=value or 'name': value forms outside JSON strings (form bodies, Python reprs)
_LOOSE = re.compile(rb"(?i)(?<![A-Za-z0-9_])(" + b"|".join(
    re.escape(k.encode()) for k in sorted(SECRET_KEYS, key=len, reverse=True))
    + rb")(['\"]?\s*[:=]\s*+)(?!['\"]?<redacted>)(['\"]?)[^\s,&;}'\"]+")


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.strip().lower() in SECRET_KEYS


def strip_secrets(value: Any) -> Any:
    """A copy without secret keys at any depth (iterative: nesting depth is the client's)."""
    return _stripped(value)[0]


def _stripped(value: Any, max_depth: int | None = None) -> tuple[Any, bool]:
    """``strip_secrets``, with containers deeper than ``max_depth`` replaced by ``CUT``; and
    whether any was."""
    if not isinstance(value, (dict, list)):
        return value, False
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root, 1)]
    cut = False
    while stack:
        src, dst, depth = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            if isinstance(src, dict) and is_secret_key(k):
                continue
            if isinstance(v, (dict, list)):
                if max_depth is not None and depth >= max_depth:
                    v, cut = CUT, True
                else:
                    child: Any = {} if isinstance(v, dict) else []
                    stack.append((v, child, depth + 1))
                    v = child
            if isinstance(dst, dict):
                dst[k] = v
            else:
                dst.append(v)
    return root, cut


def rejected_copy(raw: bytes | None, parsed: Any, secrets: list[str]) -> tuple[bytes, str]:
    """What is kept of a refused body, and a note saying how: the parsed body without secrets
    when orjson writes it; else a scrubbed prefix of the body's bytes ``raw``; else (a body
    handed over parsed, as the ML framework's ``fit`` gets it) the parsed body without secrets,
    cut below ``KEPT_DEPTH`` levels and written by the standard library (which takes integers
    past 64 bits). ``secrets``: values (the service's own) replaced wherever they appear."""
    if parsed is not None:
        try:
            return scrub_values(orjson.dumps(strip_secrets(parsed)), secrets), ""
        except orjson.JSONEncodeError:   # nested deeper than orjson writes, a huge integer
            if raw is None:
                copy, cut = _stripped(parsed, KEPT_DEPTH)
                text = json.dumps(copy, ensure_ascii=False, skipkeys=True, default=repr)
                return scrub_values(text.encode("utf-8", "replace"), secrets), (
                    f" [secrets scrubbed; nested deeper than {KEPT_DEPTH} levels: cut there]"
                    if cut else " [secrets scrubbed]")
    raw = raw or b""
    kept, cut = scrub_raw(raw[:RAW_PREFIX])
    note = " [secrets scrubbed" + (f"; the first {len(kept)} of {len(raw)} bytes kept]"
                                   if cut or len(raw) > RAW_PREFIX else "]")
    return scrub_values(kept, secrets), note


def _key(token: bytes) -> str | None:
    try:
        key = orjson.loads(token if token.endswith(b'"') and len(token) > 1 else token + b'"')
    except orjson.JSONDecodeError:
        return None
    return key if isinstance(key, str) else None


def scrub_raw(raw: bytes) -> tuple[bytes, bool]:
    """(the bytes with every secret value replaced, whether the body had to be cut short)."""
    out: list[bytes] = []
    pos, n = 0, len(raw)
    while (m := _STRING.search(raw, pos)) is not None:
        after = _SPACE.match(raw, m.end()).end()
        if after >= n or raw[after:after + 1] != b":" or not is_secret_key(_key(m.group())):
            out.append(raw[pos:m.end()])
            pos = m.end()
            continue
        start = _SPACE.match(raw, after + 1).end()
        out.append(raw[pos:start] + b'"' + REDACTED.encode() + b'"')
        head = raw[start:start + 1]
        if head in (b"{", b"["):
            return _loose(b"".join(out)), True
        pos = (_STRING.match(raw, start) if head == b'"' else _SCALAR.match(raw, start)).end()
    out.append(raw[pos:])
    return _loose(b"".join(out)), False


def _loose(raw: bytes) -> bytes:
    return _LOOSE.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED.encode(), raw)


def scrub_values(raw: bytes, secrets: list[str]) -> bytes:
    """Replace known secret values (the service's own settings) wherever they appear."""
    for secret in secrets:
        if secret:
            raw = raw.replace(secret.encode(), REDACTED.encode())
    return raw


def kept_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The allow-listed request headers, decoded, values cut to a sane length."""
    return {name.decode("latin-1").lower(): value.decode("latin-1")[:MAX_HEADER_VALUE]
            for name, value in headers if name.decode("latin-1").lower() in KEPT_HEADERS}
