"""Triton's HTTP health and metadata endpoints, with urllib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .ports import LOOPBACK


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback http URL built here)
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def base_url(http_port: int, host: str = LOOPBACK) -> str:
    return f"http://{host}:{http_port}"


def is_ready(http_port: int, timeout: float = 2.0) -> bool:
    return http_get(f"{base_url(http_port)}/v2/health/ready", timeout)[0] == 200


def is_live(http_port: int, timeout: float = 2.0) -> bool:
    return http_get(f"{base_url(http_port)}/v2/health/live", timeout)[0] == 200


def server_metadata(http_port: int, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /v2``: name, version and extensions of the server; empty when it does not answer."""
    status, body = http_get(f"{base_url(http_port)}/v2", timeout)
    if status != 200:
        return {}
    try:
        metadata = json.loads(body)
    except ValueError:
        return {}
    return metadata if isinstance(metadata, dict) else {}
