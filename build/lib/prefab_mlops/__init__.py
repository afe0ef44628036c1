"""prefab-mlops: a Prefect 3 workflow framework for machine-learning operations.

One import namespace, in layers that point one way (see the README's Architecture
section; ``tests/test_architecture.py`` enforces it):

* :mod:`prefab_mlops.core`: the model runtime: the exception root, storage (local and
  S3), the model registry, lineage fingerprints and the transformers that travel inside
  every saved model. No Prefect, Hydra, Evidently or W&B.
* :mod:`prefab_mlops.serve`: the model server (``[serve]`` extra), on ``core`` only.
* :mod:`prefab_mlops.config`: typed Hydra config schemas and their loader.
* :mod:`prefab_mlops.orchestration`: Prefect adapters: cache policy and result
  payloads, task options, artifacts, logging, retry conditions.
* :mod:`prefab_mlops.datasets`, :mod:`prefab_mlops.tracking`: data parsing, W&B.
* :mod:`prefab_mlops.tasks`: one Prefect task module per stage (the repository's
  ``tasks/``), and :mod:`prefab_mlops.flows`: thin flows that compose them (``flows/``).
* :mod:`prefab_mlops.scaffold`, :mod:`prefab_mlops.cli`, :mod:`prefab_mlops.testing`:
  project generation helpers, the ``prefab`` command and test helpers (a real Prefect
  server and worker on loopback, throw-away projects).

Importing this package has no side effects.
"""

__version__ = "0.1.0"
