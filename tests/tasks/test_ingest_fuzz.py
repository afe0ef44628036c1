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

from prefab_mlops.config import DataConfig, PipelineConfig, WindowConfig
from prefab_mlops.tasks.ingest import Dataset, ingest
from prefab_mlops.testing.fuzzing import (
    DataFile,
    assert_clear_error,
    damaged_rows,
    data_files,
    read_configs,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-ingest")


@pytest.fixture(scope="module")
def base(config, workdir: Path) -> PipelineConfig:
    cfg = config()
    paths = dataclasses.replace(cfg.paths, root=str(workdir), data_dir=str(workdir / "data"))
    return dataclasses.replace(cfg, paths=paths)


@st.composite
def preparations(draw: st.DrawFn, data: DataConfig) -> DataConfig:
    """``conf/data`` for a generated file: format, data.read, and the preparation keys
    naming columns that may or may not be there."""
    name = st.sampled_from(["a", "dup", "", "time_hour", "distance", "名前", "1"])
    plain = draw(st.integers(0, 3)) > 0  # mostly: read the file as it is
    time_column = None if plain else draw(st.one_of(st.none(), name))
    window = WindowConfig(newest=draw(st.sampled_from([None, "month", "day"])),
                          start=draw(st.sampled_from([None, "2013-06-01", "0001-01-01"])),
                          timezone=draw(st.sampled_from([None, "America/New_York"])))
    return dataclasses.replace(
        data, name="fuzz", format=draw(st.sampled_from(["auto", "auto", "csv", "parquet"])),
        read=draw(read_configs()), parse_dates=draw(st.lists(name, max_size=2)),
        dropna=[] if plain else draw(st.lists(name, max_size=1)), derive={},
        columns=None if plain else draw(st.one_of(st.none(), st.lists(name, max_size=2))),
        time_column=time_column,
        window=WindowConfig() if plain else window,
        sample_rows=draw(st.sampled_from([None, 1, 5])), snapshot=True)


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
    assert ds.layout is not None and ds.lineage_record()["read"]["format"] in ("csv",
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
        check_any_file(base, workdir, file, data.draw(preparations(base.data)))

    @pytest.mark.slow
    @settings(settings.get_profile("fuzz"))
    @given(file=data_files(), data=st.data())
    def test_read_or_refused_naming_the_file_fuzz(self, base: PipelineConfig, workdir: Path,
                                                  file: DataFile, data: st.DataObject) -> None:
        check_any_file(base, workdir, file, data.draw(preparations(base.data)))


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
