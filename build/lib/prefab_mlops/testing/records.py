"""Data frame rows as JSON-ready request records, for the serving tests and benchmark."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready records (timestamps as ISO 8601, missing values as null)."""
    out = []
    for rec in frame.to_dict("records"):
        row = {}
        for k, v in rec.items():
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
                row[k] = None
            elif hasattr(v, "isoformat"):
                row[k] = v.isoformat()
            elif hasattr(v, "item"):
                row[k] = v.item()
            else:
                row[k] = v
        out.append(row)
    return out
