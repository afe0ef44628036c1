"""prefab_mlops.serve: a REST server for the registry's production model.

``python -m prefab_mlops.serve --registry DIR --model NAME --port N`` (or ``make serve``)
serves ``POST /predict``, ``GET /health``, ``/ready``, ``/model`` and ``/metrics``.

* Requests are validated against the version's ``features.input_schema``
  (:mod:`prefab_mlops.serve.schema`); bad input gets 422 with field-level errors.
* Concurrent requests are scored together by one model call
  (:mod:`prefab_mlops.serve.batcher`), through a numpy replay of the fitted
  ``ColumnTransformer`` when it is supported and verified
  (:mod:`prefab_mlops.serve.fastpath`).
* The served version follows the registry alias without a restart; a version that
  fails its sha256 check or cannot be loaded is refused (:mod:`prefab_mlops.serve.app`).
* Scored requests can be logged as batches the monitoring flow accepts
  (:mod:`prefab_mlops.serve.reqlog`).
* An optional API key, read from the environment, guards every path but the
  probes (:mod:`prefab_mlops.serve.auth`).

The server depends only on :mod:`prefab_mlops`, never on ``tasks`` or ``flows``.
Importing this package has no side effects.
"""

from prefab_mlops.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":  # FastAPI is imported only when an app is built
        from prefab_mlops.serve.app import create_app

        return create_app
    raise AttributeError(name)
