"""prefab_core: the code that prefab-mlops tasks, flows and the model server share.

It is not a task library. It holds what several tasks and the REST server need:
the exception root (:mod:`prefab_core.errors`), typed config schemas and loading
(:mod:`prefab_core.config`), storage back-ends (:mod:`prefab_core.storage`), the
model registry (:mod:`prefab_core.registry`), experiment tracking
(:mod:`prefab_core.tracking`), lineage fingerprints and the cache policy
(:mod:`prefab_core.fingerprint`, :mod:`prefab_core.caching`) and the scikit-learn
transformers that travel inside every saved model (:mod:`prefab_core.transformers`).

Importing this package has no side effects.
"""

__version__ = "0.1.0"
