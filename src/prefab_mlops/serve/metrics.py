"""Prometheus metrics of the model server (``GET /metrics``).

With several worker processes, prometheus-client's multiprocess mode is used
(``PROMETHEUS_MULTIPROC_DIR``, set up by :mod:`prefab_mlops.serve.server`), so a scrape
of any worker reports the counters of all of them.

Metrics (all prefixed ``prefab_serve_``):

* ``requests_total{endpoint,method,status}`` and
  ``request_duration_seconds{endpoint}`` (histogram): every HTTP request.
* ``predicted_rows_total``, ``batch_rows`` (histogram of rows per model call) and
  ``batch_requests`` (requests per model call): what micro-batching does.
* ``predictions_total{label}`` (predicted class counts) and ``prediction_score``
  (histogram of the positive-class probability for binary models, of the top
  class probability for multiclass models, of the predicted value for regression).
* ``invalid_requests_total{type}``, ``unknown_categories_total{field}``.
* ``auth_failures_total{reason}``: requests refused for want of the API key
  (``missing``: none sent; ``invalid``: a wrong one); they are also in
  ``requests_total{status="401"}``.
* ``model_version{model}`` (the version being served), ``model_loaded`` (1 when a
  model is loaded), ``fast_path{model}`` (1 when the numpy fast path is in use),
  ``model_reloads_total{result}`` (``loaded`` / ``refused``).
* ``request_log_rows_total``, ``request_log_dropped_rows_total``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
PROBA_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
VALUE_BUCKETS = (-1000.0, -100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1000.0, 10_000.0,
                 100_000.0)
ENDPOINTS = frozenset({"/predict", "/health", "/ready", "/model", "/metrics", "/docs",
                       "/openapi.json"})


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class ServeMetrics:
    """The server's metrics, registered in a registry of their own.

    Args:
        problem_type: ``binary``, ``multiclass`` or ``regression`` (chooses the
            buckets of ``prediction_score``); may change on reload.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        p = "prefab_serve_"
        self.requests = Counter(f"{p}requests_total", "HTTP requests by endpoint and status.",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram(f"{p}request_duration_seconds",
                                 "Time from request start to response end.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter(f"{p}predicted_rows_total", "Rows scored.", registry=r)
        self.batch_rows = Histogram(f"{p}batch_rows", "Rows per model call (micro-batch).",
                                    buckets=ROW_BUCKETS, registry=r)
        self.batch_requests = Histogram(f"{p}batch_requests", "Requests per model call.",
                                        buckets=ROW_BUCKETS, registry=r)
        self.batch_seconds = Histogram(f"{p}batch_duration_seconds",
                                       "Time of one model call, validation excluded.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.labels = Counter(f"{p}predictions_total", "Predicted labels.", ["label"],
                              registry=r)
        self.proba = Histogram(f"{p}prediction_score",
                               "Positive-class probability (binary), top-class probability "
                               "(multiclass).", buckets=PROBA_BUCKETS, registry=r)
        self.value = Histogram(f"{p}prediction_value", "Predicted value (regression).",
                               buckets=VALUE_BUCKETS, registry=r)
        self.invalid = Counter(f"{p}invalid_requests_total", "Rejected requests by reason.",
                               ["type"], registry=r)
        self.unknown = Counter(f"{p}unknown_categories_total",
                               "Unknown categories accepted (unknown_category=accept).",
                               ["field"], registry=r)
        self.auth_failures = Counter(f"{p}auth_failures_total",
                                     "Requests refused with 401: API key missing or invalid.",
                                     ["reason"], registry=r)
        self.version = Gauge(f"{p}model_version", "Registry version being served.", ["model"],
                             multiprocess_mode="livemostrecent", registry=r)
        self.loaded = Gauge(f"{p}model_loaded", "1 when a model is loaded.",
                            multiprocess_mode="livemin", registry=r)
        self.fast = Gauge(f"{p}fast_path", "1 when the numpy fast path serves.", ["model"],
                          multiprocess_mode="livemin", registry=r)
        self.reloads = Counter(f"{p}model_reloads_total", "Model loads by result.", ["result"],
                               registry=r)
        self.log_rows = Counter(f"{p}request_log_rows_total", "Rows written to the request log.",
                                registry=r)
        self.log_dropped = Counter(f"{p}request_log_dropped_rows_total",
                                   "Rows the request log dropped (writer behind).", registry=r)
        self._label_children: dict[Any, Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, str, int], Any] = {}

    # ------------------------------------------------------------ recording
    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, method,
                                                                      str(status))
        child.inc()
        lat = self._latency_children.get(endpoint)
        if lat is None:
            lat = self._latency_children[endpoint] = self.latency.labels(endpoint)
        lat.observe(seconds)

    def predictions(self, labels: np.ndarray, proba: np.ndarray | None,
                    classes: list[Any] | None) -> None:
        """Count predicted labels and add the scores to their histogram."""
        n = len(labels)
        self.rows.inc(n)
        if proba is None:
            _observe_many(self.value, np.asarray(labels, dtype=np.float64))
            return
        idx = proba.argmax(axis=1)
        counts = np.bincount(idx, minlength=proba.shape[1])
        for j in np.nonzero(counts)[0]:
            key = classes[j] if classes else int(j)
            child = self._label_children.get(key)
            if child is None:
                child = self._label_children[key] = self.labels.labels(str(key))
            child.inc(int(counts[j]))
        scores = proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
        _observe_many(self.proba, np.asarray(scores, dtype=np.float64))

    def model_loaded(self, name: str, version: int, fast_path: bool) -> None:
        self.version.labels(name).set(version)
        self.fast.labels(name).set(1 if fast_path else 0)
        self.loaded.set(1)

    # ----------------------------------------------------------- exposition
    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (of every worker in multiprocess mode)."""
        path = multiprocess_dir()
        if path:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _observe_many(hist: Histogram, values: np.ndarray) -> None:
    """Observe many values at once: one bucket increment per bucket, not per value.

    Uses prometheus-client's histogram internals (``_upper_bounds``, ``_buckets``,
    ``_sum``) when they are there and observes value by value otherwise.
    """
    values = values[~np.isnan(values)]
    if not len(values):
        return
    bounds = getattr(hist, "_upper_bounds", None)
    buckets = getattr(hist, "_buckets", None)
    total = getattr(hist, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for v in values.tolist():
            hist.observe(v)
        return
    # bucket i counts bounds[i-1] < v <= bounds[i] (exposition makes it cumulative)
    idx = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(idx, minlength=len(bounds))
    for i in np.nonzero(counts)[0]:
        buckets[int(i)].inc(int(counts[i]))
    total.inc(float(values.sum()))
