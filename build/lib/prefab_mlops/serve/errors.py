"""Errors of the model server; all derive from :class:`prefab_mlops.core.errors.PrefabError`."""

from __future__ import annotations

from typing import Any

from prefab_mlops.core.errors import ConfigError, PrefabError


class ServeError(PrefabError):
    """Root of every error raised on purpose by :mod:`prefab_mlops.serve`."""


class ServeConfigError(ConfigError, ServeError):
    """A server setting (CLI flag or ``PREFAB_SERVE_*`` variable) is out of range."""


class ModelRefused(ServeError):
    """A registry version could not be served (missing, tampered, unreadable, unusable).

    The server keeps serving the model it has.
    """


class FastPathUnsupported(ServeError):
    """The fitted pipeline holds a step the numpy fast path cannot reproduce.

    Not a failure: the server falls back to the scikit-learn pipeline.
    """


class RequestInvalid(ServeError):
    """A ``/predict`` request body does not match the model's input schema.

    Args:
        errors: One record per problem, FastAPI style: ``loc`` (path into the body),
            ``msg``, ``type`` and, where it helps, ``ctx``.
        status: HTTP status to answer with (422, or 413 for a body that is too large).
        total: How many problems were found (``errors`` may be capped).
    """

    def __init__(self, errors: list[dict[str, Any]], status: int = 422,
                 total: int | None = None) -> None:
        first = errors[0]["msg"] if errors else "invalid request"
        super().__init__(f"Invalid request: {first}",
                         fix="Send JSON records with the fields of GET /model -> input_schema.")
        self.errors = errors
        self.status = status
        self.total = len(errors) if total is None else total
