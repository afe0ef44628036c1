"""The optional API key of the model server.

The key is read from an environment variable (``PREFAB_SERVE_API_KEY``, or the one
``--api-key-env`` names), never from a command-line value, which any user of the
machine could read in ``ps``. The settings carry only the variable's NAME, so the
key is in neither ``PREFAB_SERVE_SETTINGS`` (what the workers are started with),
``--print-settings``, ``GET /model`` nor any log line; each worker process reads it
from its own (inherited) environment.

With a key, every path but the probes (``/health``, ``/ready``) needs
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; anything else is answered
401 in the server's error format (``detail[].loc/msg/type``). :class:`ApiKey` keeps
only the key's SHA-256 and compares digests with :func:`hmac.compare_digest`, so
neither the contents nor the length of the key show in response times.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from prefab_mlops.serve.errors import ServeConfigError

DEFAULT_ENV = "PREFAB_SERVE_API_KEY"
OPEN_PATHS = frozenset({"/health", "/ready"})  # probes: a load balancer has no key
MIN_LENGTH = 16
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_HOW = "send the header 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def key_problem(env_name: str) -> str | None:
    """What is wrong with the key in ``$env_name`` (never showing it), or ``None``."""
    value = os.environ.get(env_name)
    if value is None:
        return (f"--api-key-env names ${env_name}, which is not set; set it to the key "
                f"(generate one with {_GENERATE}), or leave --api-key-env and "
                f"${DEFAULT_ENV} out to serve without a key")
    if not value:
        return (f"${env_name} is set but empty; set it to the key (generate one with "
                f"{_GENERATE}), or unset it to serve without a key")
    if not all(0x21 <= ord(c) <= 0x7E for c in value):
        return (f"${env_name} holds whitespace or characters outside printable ASCII, "
                "which an HTTP header cannot carry intact; use letters, digits and "
                f"punctuation (e.g. {_GENERATE})")
    if len(value) < MIN_LENGTH:
        return (f"${env_name} holds a key shorter than {MIN_LENGTH} characters, which is "
                f"too easy to guess; generate one with {_GENERATE}")
    return None


class ApiKey:
    """The server's API key, held as its SHA-256 digest.

    Args:
        env_name: The environment variable that holds the key.

    Raises:
        ServeConfigError: the variable is unset, empty or holds an unusable key.
    """

    def __init__(self, env_name: str) -> None:
        problem = key_problem(env_name)
        if problem:
            raise ServeConfigError(f"Cannot use the API key: {problem}.",
                                   fix="Set the variable in the server's environment.")
        self.env_name = env_name
        self._digest = hashlib.sha256(os.environ[env_name].encode("ascii")).digest()

    def __repr__(self) -> str:  # never the key
        return f"ApiKey(from ${self.env_name})"

    def matches(self, candidate: bytes) -> bool:
        """Whether ``candidate`` is the key, in time independent of both values."""
        return hmac.compare_digest(hashlib.sha256(candidate).digest(), self._digest)

    def check(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """``None`` when the request's headers carry the key; else ``missing`` or ``invalid``.

        Args:
            headers: The ASGI scope's raw headers (lower-case names).
        """
        sent = False
        ok = False
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    continue  # another scheme (Basic...) is not our credential
                token = token.strip()
            elif name == b"x-api-key":
                token = value.strip()
            else:
                continue
            sent = True
            ok |= self.matches(token)  # every credential sent is compared, in constant time
        if ok:
            return None
        return "invalid" if sent else "missing"


def unauthorized_body(reason: str) -> dict[str, Any]:
    """The 401 answer: the server's error format, saying what is expected (no key shown)."""
    if reason == "missing":
        err = {"loc": ["header", "authorization"], "type": "missing_api_key",
               "msg": f"this endpoint needs the server's API key: {_HOW}"}
    else:
        err = {"loc": ["header", "authorization"], "type": "invalid_api_key",
               "msg": f"the API key sent is not the server's key; {_HOW} with the key the "
                      "server was started with"}
    return {"detail": [err]}


def www_authenticate(reason: str) -> str:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750)."""
    if reason == "missing":
        return 'Bearer realm="prefab-serve"'
    return 'Bearer realm="prefab-serve", error="invalid_token"'
