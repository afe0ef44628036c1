"""Property tests of ``ingest.fn``: any file, any preparation config, never a crash.

Every generated file (CSV in any separator, encoding and compression, Parquet under
any name, damaged or random bytes; nasty column names and values) either becomes a
Dataset whose frame has unique string column names, or ends in a PrefabError that
names the file (or the config key) and carries a fix. The ``prefab`` hypothesis
profile runs a few derandomized examples; the slow tests run the ``fuzz`` profile.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from prefab_mlops.config import DataConfig, PipelineConfig
from prefab_mlops.tasks.ingest import Dataset, ingest
from prefab_mlops.testing.fuzzing import (
    DataFile,
    assert_clear_error,
    damaged_rows,
    data_configs,
    data_files,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-ingest")


@pytest.fixture(scope="module")
def base(config, workdir: Path) -> PipelineConfig:
    cfg = config()
    paths = dataclasses.replace(cfg.paths, root=str(workdir), data_dir=str(workdir / "data"))
    return dataclasses.replace(cfg, paths=paths)


def ingest_file(cfg: PipelineConfig, workdir: Path, file: DataFile, data: DataConfig
                ) -> Dataset | None:
    """Ingest ``file`` with ``data``: the Dataset, or None after a clear PrefabError."""
    path = workdir / f"{uuid.uuid4().hex[:8]}-{file.name}"
    path.write_bytes(file.content)
    try:
        ds = ingest.fn(dataclasses.replace(data, uri=str(path)), cfg.paths, cfg.storage,
                       cfg.seed)
    except Exception as err:  # noqa: BLE001 - the property is about what is raised
        assert_clear_error(err, path.name, "data.")
        event(f"refused: {type(err).__name__}")
        return None
    finally:
        path.unlink()
    names = list(ds.frame.columns)
    assert all(isinstance(c, str) for c in names) and len(set(names)) == len(names)
    assert ds.rows == len(ds.frame) and ds.columns == names
    assert ds.layout is not None and ds.lineage_record().to_json()["read"]["format"] in ("csv",
                                                                               "parquet")
    event(f"read: {ds.layout.format}")
    return ds


def check_any_file(cfg: PipelineConfig, workdir: Path, file: DataFile, data: DataConfig) -> None:
    ingest_file(cfg, workdir, file, data)


def check_real_rows(cfg: PipelineConfig, workdir: Path, file: DataFile) -> None:
    """Damaged real flights rows under the flights config (derive, columns, window)."""
    ds = ingest_file(cfg, workdir, file, dataclasses.replace(cfg.data, format="auto"))
    if ds is not None:
        assert set(ds.columns) == set(cfg.data.columns or ds.columns)


@pytest.fixture(scope="module")
def real_rows(flights_frame: pd.DataFrame) -> pd.DataFrame:
    return flights_frame.head(40).reset_index(drop=True)


class TestIngestFuzzAnyFile:
    @given(file=data_files(), data=st.data())
    def test_read_or_refused_naming_the_file(self, base: PipelineConfig, workdir: Path,
                                             file: DataFile, data: st.DataObject) -> None:
        check_any_file(base, workdir, file, data.draw(data_configs(base.data)))

    @pytest.mark.slow
    @settings(settings.get_profile("fuzz"))
    @given(file=data_files(), data=st.data())
    def test_read_or_refused_naming_the_file_fuzz(self, base: PipelineConfig, workdir: Path,
                                                  file: DataFile, data: st.DataObject) -> None:
        check_any_file(base, workdir, file, data.draw(data_configs(base.data)))


class TestIngestFuzzRealRows:
    @given(data=st.data())
    def test_damaged_flights_rows(self, base: PipelineConfig, workdir: Path,
                                  real_rows: pd.DataFrame, data: st.DataObject) -> None:
        check_real_rows(base, workdir, data.draw(data_files(damaged_rows(real_rows))))

    @pytest.mark.slow
    @settings(settings.get_profile("fuzz"))
    @given(data=st.data())
    def test_damaged_flights_rows_fuzz(self, base: PipelineConfig, workdir: Path,
                                       real_rows: pd.DataFrame, data: st.DataObject) -> None:
        check_real_rows(base, workdir, data.draw(data_files(damaged_rows(real_rows))))
