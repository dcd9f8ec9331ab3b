"""Who may call: basic auth on the ML-backend and operations endpoints, the shared-secret header
on ``/webhook``, and what is kept of a refused webhook.

Both compare bytes in constant time and never echo what was sent. Any byte may arrive in a
header (Label Studio or not): undecodable credentials are simply wrong ones.

A webhook refused for its token is usually a Label Studio project whose webhook lacks the header
(set before the token was, or created by hand). So each refusal is counted, logged at most once
a minute per project and reason (never with its body), kept in the outbox's rejected list
(``labelbridge outbox rejected``) at most every ``RECORD_EVERY_S`` per project and reason, and
the projects are remembered so the next start can name them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import time
from collections import deque
from typing import Any

import orjson

from labelbridge.service.errors import ClientError

log = logging.getLogger(__name__)
RECORD_EVERY_S = 600.0
LOG_EVERY_S = 60.0
RECORDS_PER_MINUTE = 30        # whatever the projects: a flood of refusals fills no disk
MAX_PROJECTS_SEEN = 1000
SEEN_CURSOR = "webhook:refused-projects"   # outbox key/value: project -> reason, counts, times
MISSING, WRONG = "missing", "wrong"


def header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class BasicAuth:
    def __init__(self, user: str | None, password: str | None) -> None:
        self.enabled = user is not None
        self._user = (user or "").encode()
        self._password = (password or "").encode()

    def check(self, scope: dict) -> None:
        """Raise 401 unless the request carries the configured basic credentials."""
        if not self.enabled:
            return
        scheme, _, encoded = (header(scope, b"authorization") or b"").partition(b" ")
        given_user = given_pass = b""
        decoded = False
        if scheme.lower() == b"basic":
            try:
                given_user, _, given_pass = base64.b64decode(encoded.strip(),
                                                             validate=True).partition(b":")
                decoded = True
            except (binascii.Error, ValueError):
                pass
        ok = hmac.compare_digest(given_user, self._user) & \
            hmac.compare_digest(given_pass, self._password) & decoded
        if not ok:
            raise ClientError(401, "basic authentication required",
                              {"WWW-Authenticate": 'Basic realm="labelbridge"'})


class WebhookToken:
    def __init__(self, header_name: str, token: str | None) -> None:
        self.header_name = header_name
        self._key = header_name.lower().encode("latin-1")
        self._token = token.encode() if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def refusal(self, scope: dict) -> str | None:
        """None when the request may pass; else ``MISSING`` or ``WRONG``."""
        if self._token is None:
            return None
        given = header(scope, self._key)
        if given is None:
            return MISSING
        return None if hmac.compare_digest(given, self._token) else WRONG


def peek(raw: bytes) -> tuple[Any, int | None]:
    """The action and Label Studio project id of a webhook body, where it has them."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    project = body.get("project")
    pid = project.get("id") if isinstance(project, dict) else project
    plausible = isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 1 << 40
    return body.get("action"), pid if plausible else None


class Refusals:
    """Webhooks refused for their token: counted, logged and recorded at a bounded rate."""

    def __init__(self, header_name: str) -> None:
        self.header_name = header_name
        self._lock = threading.Lock()
        self._logged: dict[tuple, float] = {}
        self._recorded: dict[tuple, float] = {}
        self._recent: deque[float] = deque()
        self.held_back: dict[tuple, int] = {}

    def reason(self, why: str, project: int | None) -> str:
        what = "no" if why == MISSING else "a wrong"
        where = f"project {project}" if project is not None else "unknown project"
        return f"401 unauthorized: {what} {self.header_name} header ({where})"

    def note(self, why: str, project: int | None, now: float | None = None) -> bool:
        """Log (rate-limited); True when this refusal should also be recorded durably."""
        t = time.monotonic() if now is None else now
        key = (why, project)
        with self._lock:
            if len(self._logged) > 10_000:     # distinct projects without end: forget them
                self._logged.clear()
                self._recorded.clear()
                self.held_back.clear()
            self.held_back[key] = self.held_back.get(key, 0) + 1
            if t - self._logged.get(key, -1e18) >= LOG_EVERY_S:
                self._logged[key] = t
                n, self.held_back[key] = self.held_back[key], 0
                log.warning("webhook refused: %s; %d refusal(s) since the last line. Fix: "
                            "`labelbridge connect --ls-project %s` puts the header on its "
                            "webhook", self.reason(why, project), n, project or "N")
            while self._recent and t - self._recent[0] >= 60.0:
                self._recent.popleft()
            if t - self._recorded.get(key, -1e18) < RECORD_EVERY_S or \
                    len(self._recent) >= RECORDS_PER_MINUTE:
                return False
            self._recorded[key] = t
            self._recent.append(t)
            return True


def remember(seen: dict[str, Any], why: str, project: int | None, now: float) -> dict[str, Any]:
    """The refused-projects record with one more refusal (stored as an outbox cursor)."""
    key = str(project) if project is not None else "unknown"
    entry = seen.get(key) or {"first": now, "count": 0, "reasons": []}
    entry.update(last=now, count=entry["count"] + 1,
                 reasons=sorted(set(entry["reasons"]) | {why}))
    kept = sorted(((k, v) for k, v in seen.items() if k != key),
                  key=lambda kv: kv[1].get("last", 0))[-(MAX_PROJECTS_SEEN - 1):]
    return {**dict(kept), key: entry}


def warn_at_start(seen: dict[str, Any], header_name: str) -> None:
    """Name the projects whose webhooks were refused for the token, so they can be fixed."""
    missing = sorted((k for k, v in seen.items() if MISSING in v.get("reasons", ())), key=str)
    wrong = sorted((k for k, v in seen.items() if WRONG in v.get("reasons", ())), key=str)
    if missing:
        log.warning("webhooks without the %s header were refused for Label Studio project(s) %s: "
                    "their annotations do not arrive. Run `labelbridge connect --ls-project N` for "
                    "each (it puts the header on the webhook), then `labelbridge reconcile`",
                    header_name, ", ".join(missing))
    if wrong:
        log.warning("webhooks with a wrong %s header were refused for Label Studio project(s) %s",
                    header_name, ", ".join(wrong))
