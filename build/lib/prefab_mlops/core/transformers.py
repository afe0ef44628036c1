"""scikit-learn transformers that travel inside saved models.

They live in the shared package (not in ``tasks/``) because a registered model is
unpickled by the server and by monitoring, which must not import task code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

DATETIME_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "minute",
                  "weekofyear", "is_weekend")


def as_str_object(X: Any) -> pd.DataFrame:
    """Categorical columns as plain object values (NaN for missing), so encoders see one type.

    Lives here, not in ``tasks``, because it is pickled inside every model and the
    server must unpickle models without importing task code.
    """
    X = pd.DataFrame(X)
    return X.astype("object").where(X.notna(), np.nan)


class DatetimeParts(TransformerMixin, BaseEstimator):
    """Expand datetime columns into numeric calendar parts.

    Strings are parsed as ISO timestamps; unparseable values become NaN.

    Args:
        parts: Any of ``year, month, day, dayofweek, dayofyear, hour, minute,
            weekofyear, is_weekend``.
    """

    def __init__(self, parts: tuple[str, ...] | list[str] = ("month", "dayofweek", "hour")):
        self.parts = parts

    def fit(self, X: pd.DataFrame, y: Any = None) -> DatetimeParts:
        bad = [p for p in self.parts if p not in DATETIME_PARTS]
        if bad:
            raise ValueError(f"Unknown datetime parts {bad}; choose from {DATETIME_PARTS}")
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_in_")
        out = {}
        for col in self.feature_names_in_:
            s = X[col]
            if not pd.api.types.is_datetime64_any_dtype(s):
                s = pd.to_datetime(s, errors="coerce", utc=True)
            dt = s.dt
            for part in self.parts:
                if part == "weekofyear":
                    v = dt.isocalendar().week.astype("float64")
                elif part == "is_weekend":
                    v = (dt.dayofweek >= 5).astype("float64")
                else:
                    v = getattr(dt, part).astype("float64")
                out[f"{col}_{part}"] = v.to_numpy(dtype="float64", na_value=np.nan)
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        return np.asarray([f"{c}_{p}" for c in self.feature_names_in_ for p in self.parts],
                          dtype=object)


class NativeCategorical(TransformerMixin, BaseEstimator):
    """Cast columns to pandas ``category`` with categories fixed at fit time.

    Values unseen during fit become missing, which XGBoost (``enable_categorical``)
    handles natively. Output is always a DataFrame.
    """

    def fit(self, X: pd.DataFrame, y: Any = None) -> NativeCategorical:
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.categories_ = [
            sorted(pd.Series(X[c]).dropna().astype(str).unique().tolist())
            for c in self.feature_names_in_
        ]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "categories_")
        X = pd.DataFrame(X, columns=self.feature_names_in_) if not isinstance(
            X, pd.DataFrame) else X
        out = {}
        for col, cats in zip(self.feature_names_in_, self.categories_, strict=True):
            s = X[col]
            s = s.astype("object").where(s.notna(), None)
            v = s.astype(str).where(s.notna())
            # Unseen values become missing explicitly: pandas 3 warns (pandas 4 raises)
            # when Categorical() is given values outside its categories.
            out[col] = pd.Categorical(v.where(v.isin(cats)), categories=cats)
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        return self.feature_names_in_.copy()
