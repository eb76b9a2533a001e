"""JSON over HTTP to an OpenAI-compatible server: retries with backoff on transient failures (connection refused,
429, 5xx, timeouts), a clear error on the rest. The API key is read from the environment at each request and is
never kept, logged or put in an error message."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

from ..errors import ServerError

MAX_DELAY = 30.0  # seconds: the longest wait between two attempts
ERROR_TEXT = 300  # characters of a server's error body shown in a message


__all__ = ["HttpClient", "ServerError", "Transient", "api_key", "backoff_delay", "is_transient_status"]


class Transient(Exception):
    """One attempt failed in a way worth retrying (its `reason`, and the server's Retry-After where given)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def is_transient_status(status: int) -> bool:
    """HTTP statuses worth retrying: 408 (timeout), 429 (rate limit), and every 5xx."""
    return status in (408, 429) or 500 <= status <= 599


def backoff_delay(attempt: int, base: float = 0.5, cap: float = MAX_DELAY, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first retry): base x 2^attempt, at most `cap`; a
    server's Retry-After is honoured (also capped)."""
    if retry_after is not None and retry_after >= 0:
        return min(cap, retry_after)
    return min(cap, base * (2 ** attempt))


def api_key(env_name: str) -> str | None:
    """The key held by the environment variable `env_name` (None when no variable is named)."""
    if not env_name:
        return None
    key = os.environ.get(env_name, "")
    if not key:
        raise ServerError(f"the environment variable {env_name} (--api-key-env) is not set or empty")
    return key


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except ValueError:
        return None


def _refusal(method: str, url: str, status: int, body: str, env_name: str) -> ServerError:
    hint = ""
    if status in (401, 403):
        hint = (f" (check the key in ${env_name})" if env_name else
                " (the server wants an API key: name its environment variable with --api-key-env)")
    elif status == 404:
        hint = " (is --base-url the server's OpenAI base, usually ending in /v1?)"
    return ServerError(f"{method} {url}: HTTP {status}{hint}: {body[:ERROR_TEXT]}")


@dataclass
class HttpClient:
    """Requests to `base_url` (the OpenAI base, e.g. http://127.0.0.1:8000/v1) with bounded retries.

    `on_retry(reason, attempt, delay)` hears about each retry; `before_retry()` runs before each (e.g. to restart a
    local server that died)."""

    base_url: str
    api_key_env: str = ""
    timeout: float = 300.0
    max_retries: int = 8
    on_retry: Callable[[str, int, float], None] | None = None
    before_retry: Callable[[], None] | None = None
    sleep: Callable[[float], None] = time.sleep

    @property
    def root(self) -> str:
        """The server's root (the base URL without a trailing /v1): where non-OpenAI routes live."""
        base = self.base_url.rstrip("/")
        return base[:-3] if base.endswith("/v1") else base

    def url(self, path: str, root: bool = False) -> str:
        return (self.root if root else self.base_url.rstrip("/")) + path

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def get(self, path: str, *, root: bool = False) -> dict:
        """GET `path` under the OpenAI base (under the server's root with `root`)."""
        return self.request("GET", path, root=root)

    def request(self, method: str, path: str, body: dict | None = None, root: bool = False) -> dict:
        """One call, retried on transient failures up to `max_retries` times; ServerError when it cannot succeed.
        The URL is made afresh for each attempt (`before_retry` may have moved the server)."""
        for attempt in range(self.max_retries + 1):
            url = self.url(path, root)
            try:
                return self.once(method, url, body)
            except Transient as failure:
                if attempt == self.max_retries:
                    raise ServerError(f"{method} {url}: {failure.reason}; gave up after {attempt + 1} attempts") \
                        from None
                delay = backoff_delay(attempt, retry_after=failure.retry_after)
                if self.on_retry:
                    self.on_retry(failure.reason, attempt + 1, delay)
                self.sleep(delay)
                if self.before_retry:
                    self.before_retry()
        raise AssertionError("unreachable")

    def once(self, method: str, url: str, body: dict | None = None) -> dict:
        """One attempt: the decoded JSON answer; Transient or ServerError otherwise."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = api_key(self.api_key_env)
        if key:
            headers["Authorization"] = "Bearer " + key
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", errors="replace")
            if is_transient_status(error.code):
                raise Transient(f"HTTP {error.code}", _retry_after(error.headers)) from None
            raise _refusal(method, url, error.code, text, self.api_key_env) from None
        except urllib.error.URLError as error:
            raise Transient(f"cannot reach the server ({error.reason})") from None
        except (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError) as error:
            raise Transient(f"connection failed ({type(error).__name__}: {error})") from None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ServerError(f"{method} {url}: the answer is not JSON: {raw[:ERROR_TEXT]!r}") from None
