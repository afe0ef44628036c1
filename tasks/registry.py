"""Registry access for tasks: open the registry a config describes, and load the model
an alias points at (the production model, for training, promotion, monitoring and
batch scoring).
"""

from __future__ import annotations

from prefect import task

from prefab_mlops.config import RegisterConfig
from prefab_mlops.core.registry import PRODUCTION_ALIAS, LoadedModel, ModelRegistry
from prefab_mlops.core.storage import StorageConfig, object_store
from prefab_mlops.orchestration.retries import retry_transient


def open_registry(cfg: RegisterConfig, storage: StorageConfig) -> ModelRegistry:
    """The registry described by ``conf/register`` and ``conf/storage``."""
    return ModelRegistry(object_store(storage, cfg.root, "registry"))


@task(name="load-production", retry_condition_fn=retry_transient)
def load_production(cfg: RegisterConfig, storage: StorageConfig, alias: str = PRODUCTION_ALIAS,
                    unless_lineage: str | None = None,
                    with_trained_rows: bool = False) -> LoadedModel | None:
    """The model behind ``alias`` (sha256-checked), or None if there is none yet.

    Args:
        cfg: ``conf/register``: model name and registry root.
        storage: ``conf/storage``: local or S3.
        alias: The alias to load (``promote.alias``).
        unless_lineage: A challenger's lineage fingerprint. If the version behind
            ``alias`` has it, the champion *is* the challenger: its manifest is
            returned with ``model=None`` and neither the model file nor its
            training rows are read.
        with_trained_rows: Also read the rows it was trained on
            (``LoadedModel.trained_rows``; None for a version registered without
            them). Only the champion comparison needs them.

    Raises:
        IntegrityError: the production model file was tampered with.
    """
    registry = open_registry(cfg, storage)
    state = registry.alias(cfg.model_name, alias)
    if state is None:
        return None
    if unless_lineage is not None:
        mv = registry.get_version(cfg.model_name, state.version)
        if mv.fingerprint == unless_lineage:
            return LoadedModel(version=mv, model=None)
    loaded = registry.load(cfg.model_name, version=state.version)
    if with_trained_rows:
        loaded.trained_rows = registry.trained_rows(loaded.version)
    return loaded
