"""Optional bearer-token authentication for `imgpipe serve`.

The token comes from an environment variable or a file (a mounted secret),
never from the configuration itself. Requests outside the open paths
(/healthz and /metrics by default, for probes and scrapers) must carry
`Authorization: Bearer <token>`; the comparison takes constant time.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
from typing import Iterable, Optional


class AuthConfigError(ValueError):
    """The configured token cannot be read; the message says which setting."""


def read_token(env_name: str = "", file_path: str = "") -> Optional[str]:
    """The token named by serving.auth_token_env or serving.auth_token_file, or None (no auth)."""
    if env_name and file_path:
        raise AuthConfigError("set serving.auth_token_env or serving.auth_token_file, not both")
    if env_name:
        token = os.environ.get(env_name, "").strip()
        if not token:
            raise AuthConfigError(f"serving.auth_token_env names {env_name}, which is not set "
                                  "or empty in this environment")
        return token
    if file_path:
        try:
            with open(file_path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise AuthConfigError(f"serving.auth_token_file {file_path}: cannot read it "
                                  f"({error.strerror})") from None
        if not token:
            raise AuthConfigError(f"serving.auth_token_file {file_path} is empty")
        return token
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: 401 with WWW-Authenticate: Bearer unless the token matches."""

    def __init__(self, app, token: str, open_paths: Iterable[str]):
        self.app, self.open_paths = app, frozenset(open_paths)
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "authentication required: send Authorization: Bearer "
                                    "<token>"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="imgpipe"')]})
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope) -> bool:
        sent = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        return hmac.compare_digest(sent, self.expected)
