"""Fetching Labelbox mask PNGs: by URL with the API key, or from a local file or ``data:`` URL.

Labelbox mask URLs answer 401 without ``Authorization: Bearer <key>`` (the official notebooks
send ``client.headers``). The key is only sent to Labelbox's hosts (``*.labelbox.com`` and the
configured endpoints), never to another host an export may name. 429 and 5xx answers,
timeouts and dropped connections are retried with exponential backoff (a ``Retry-After`` is
honoured up to ``MAX_WAIT``); other statuses fail at once. Messages never show a URL's query
string (signed URLs carry tokens there).
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlsplit

import requests

MAX_WAIT = 30.0
MAX_BYTES = 256 << 20  # no mask PNG is this large; a larger answer is not a mask


class MaskFetchError(ValueError):
    """A mask PNG could not be had; the message names the URL (without its query) and why."""


def redact(url: str) -> str:
    if url.startswith("data:"):
        return "data: URL"
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl() if parts.query else url


class MaskFetcher:
    def __init__(self, headers: dict[str, str] | None = None, auth_hosts: Iterable[str] = (),
                 timeout: float = 30.0, retries: int = 4, backoff: float = 0.5) -> None:
        self.headers = dict(headers or {})
        self.auth_hosts = frozenset(h.lower() for h in auth_hosts)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session: requests.Session | None = None

    @classmethod
    def for_labelbox(cls, api_key: str | None, endpoints: Iterable[str] = (),
                     **kwargs) -> MaskFetcher:
        """Headers of the labelbox SDK client (its Authorization among them) for these endpoints'
        hosts and Labelbox's own."""
        headers: dict[str, str] = {}
        if api_key:
            import labelbox as lb  # the client only builds a session: no network call
            headers = dict(lb.Client(api_key=api_key, endpoint="https://api.labelbox.com/graphql")
                           .headers)
        return cls(headers, {urlsplit(e).hostname or "" for e in endpoints} - {""}, **kwargs)

    def __getstate__(self) -> dict:  # picklable for index worker processes: no session
        state = dict(self.__dict__)
        state["_session"] = None
        return state

    def _sends_key(self, host: str) -> bool:
        host = host.lower()
        return host in self.auth_hosts or host == "labelbox.com" or host.endswith(".labelbox.com")

    def fetch(self, url: str, base_dir: Path | None = None) -> bytes:
        """The bytes a mask reference names: http(s), ``file://``, ``data:`` or a path (relative
        to ``base_dir``, the export file's folder)."""
        if url.startswith("data:"):
            head, _, data = url.partition(",")
            if not head.endswith(";base64"):
                raise MaskFetchError("data: URL of a mask must be base64")
            try:
                return base64.b64decode(data, validate=True)
            except binascii.Error:
                raise MaskFetchError("data: URL is not valid base64") from None
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return self._get(url)
        if scheme == "file":
            path = Path(unquote(urlsplit(url).path))
        elif scheme and len(scheme) > 1:  # "c:" is a Windows drive, not a scheme
            raise MaskFetchError(f"{redact(url)}: unsupported URL scheme {scheme!r}")
        else:
            path = (base_dir or Path()) / url
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MaskFetchError(f"{path}: {exc.strerror or exc}") from None

    def _get(self, url: str) -> bytes:
        if self._session is None:
            self._session = requests.Session()
        keyed = self._sends_key(urlsplit(url).hostname or "")
        headers = {k: v for k, v in self.headers.items()
                   if keyed or k.lower() != "authorization"}
        if keyed and "authorization" not in {k.lower() for k in headers}:  # 401, certainly
            raise MaskFetchError(f"{redact(url)}: mask URLs need the Labelbox API key: set "
                                 "LABELBOX_API_KEY")
        problem = ""
        for attempt in range(self.retries + 1):
            wait = min(self.backoff * 2 ** attempt, MAX_WAIT)
            try:
                with self._session.get(url, headers=headers, timeout=self.timeout,
                                       stream=True) as resp:
                    if resp.status_code == 200:
                        return _body(resp, url)
                    problem = f"HTTP {resp.status_code}"
                    if resp.status_code in (401, 403):
                        raise MaskFetchError(f"{redact(url)}: {problem} " + (
                            "(the API key was refused)" if "authorization" in
                            {k.lower() for k in headers} else
                            "(mask URLs need the Labelbox API key: set LABELBOX_API_KEY)"))
                    if resp.status_code != 429 and resp.status_code < 500:
                        raise MaskFetchError(f"{redact(url)}: {problem}")
                    wait = max(wait, _retry_after(resp))
            except requests.RequestException as exc:  # refused, reset, timed out, cut short
                problem = exc.__class__.__name__
            if attempt < self.retries:
                time.sleep(wait)
        raise MaskFetchError(f"{redact(url)}: {problem} after {self.retries + 1} attempts")


def _body(resp: requests.Response, url: str) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(1 << 20):
        size += len(chunk)
        if size > MAX_BYTES:
            raise MaskFetchError(f"{redact(url)}: answer larger than {MAX_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(resp: requests.Response) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", 0)), MAX_WAIT)
    except ValueError:
        return 0.0
