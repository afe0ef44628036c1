"""The single exception root of prefab-mlops.

Every error raised on purpose by prefab-mlops code derives from :class:`PrefabError`.
Each message says what was expected, what was found, and how to fix it.

Errors are split into *transient* ones (worth a retry: network hiccups, a busy
object store) and everything else (bad data, bad config), which must fail at once.
Retry conditions in :mod:`prefab_mlops.orchestration.retries` rely on that split.
"""

from __future__ import annotations


class PrefabError(Exception):
    """Root of every prefab-mlops error.

    Args:
        message: What went wrong, naming the file/column/key involved.
        fix: How to fix it. Appended to the message as ``Fix: ...``.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\nFix: {fix}")

    def __reduce__(self):  # keep errors picklable across Prefect result storage
        return (_rebuild, (type(self), self.message, self.fix))


def _rebuild(cls: type[PrefabError], message: str, fix: str | None) -> PrefabError:
    err = cls.__new__(cls)
    PrefabError.__init__(err, message, fix)
    return err


class ConfigError(PrefabError):
    """A config key is missing, unknown, of the wrong type or inconsistent."""


class DataError(PrefabError):
    """Input data cannot be used. Never transient: retrying will not help."""


class DataSourceNotFound(DataError):
    """The data location does not exist."""


class DataFormatError(DataError):
    """The data exists but cannot be parsed (malformed CSV, empty file, duplicate columns)."""


class DataValidationError(DataError):
    """The data violates its declared schema. Carries every violation at once.

    Args:
        message: Human readable summary listing every violation.
        violations: One record per (column, rule) with a count and examples.
        fix: How to fix it.
    """

    def __init__(self, message: str, violations: list[dict] | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.violations = violations or []

    def __reduce__(self):
        return (_rebuild_validation, (self.message, self.violations, self.fix))


def _rebuild_validation(message: str, violations: list[dict], fix: str | None):
    return DataValidationError(message, violations, fix)


class ContractError(PrefabError):
    """A stored record (a model's input schema, a registry manifest) has the wrong shape.

    Raised by the one parser of such records (:mod:`prefab_mlops.core.records`) when a
    field is missing, unknown, or of the wrong type or value. Never transient.

    Args:
        message: What was expected and what was found.
        field: The dotted path of the offending field, e.g.
            ``features.input_schema.columns[2].kind`` (empty: the record itself).
        fix: How to fix it.
    """

    def __init__(self, message: str, field: str = "", fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.field = field

    def __reduce__(self):
        return (_rebuild_contract, (self.message, self.field, self.fix))


def _rebuild_contract(message: str, field: str, fix: str | None) -> ContractError:
    return ContractError(message, field, fix)


class LeakageError(DataError):
    """Model inputs alone nearly determine the target and ``validate.leakage`` is ``fail``.

    Args:
        message: Names each suspected column and its one-feature score.
        suspects: ``(column, score, metric)`` per suspect.
        fix: How to leave them out (conf/features).
    """

    def __init__(self, message: str, suspects: list[tuple[str, float, str]] | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.suspects = suspects or []

    def __reduce__(self):
        return (_rebuild_leakage, (self.message, self.suspects, self.fix))


def _rebuild_leakage(message: str, suspects: list[tuple[str, float, str]],
                     fix: str | None) -> LeakageError:
    return LeakageError(message, suspects, fix)


class QualityGateError(PrefabError):
    """A model failed its quality gate and the gate is configured to fail the run."""


class RegistryError(PrefabError):
    """The model registry is missing a model/version/alias or is inconsistent."""


class IntegrityError(RegistryError):
    """A stored model file does not match its recorded sha256."""


class AliasMovedError(RegistryError):
    """An alias no longer points at the version a compare-and-set expected.

    Raised by ``ModelRegistry.set_alias(..., expected=...)`` when another writer
    moved the alias after the caller read it (for example a concurrent training run
    promoted its own model). Not transient: the caller's decision was made against
    a champion that is gone, so it must decide again rather than retry as is.

    Args:
        message: What moved, from which version to which.
        current: The version the alias points at now (None: the alias does not exist).
        expected: The version the caller expected (None: no alias yet).
        fix: How to fix it.
    """

    def __init__(self, message: str, current: int | None, expected: int | None,
                 fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.current = current
        self.expected = expected

    def __reduce__(self):
        return (_rebuild_alias_moved, (self.message, self.current, self.expected, self.fix))


def _rebuild_alias_moved(message: str, current: int | None, expected: int | None,
                         fix: str | None) -> AliasMovedError:
    return AliasMovedError(message, current, expected, fix)


class StepError(PrefabError):
    """A project's own step (``conf/steps``) broke its hook's contract while running.

    For example an ``after_ingest`` step that returned something other than a
    DataFrame. A step that cannot be imported or whose ``params`` do not fit its
    signature is a :class:`ConfigError`, raised before any work starts.
    """


class CacheError(PrefabError):
    """A cached task result cannot be read back (a file of it is missing or damaged)."""


class TransientError(PrefabError):
    """A failure that may succeed on retry (network, object store, busy resource)."""


class TrackingError(PrefabError):
    """Experiment tracking failed. The pipeline only warns about it."""


class TrackingTransientError(TrackingError, TransientError):
    """Experiment tracking failed for a network reason (W&B unreachable, a timeout).

    Still a :class:`TrackingError`, so callers that only warn keep working, and a
    :class:`TransientError`, so the ``track`` task's retries apply to it.
    """
