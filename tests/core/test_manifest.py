"""prefab_mlops.core.schema, .manifest and .records: the typed contracts and their one parser.

The registry round trip and the refusal of a manifest of the wrong shape by every
registry reader are in test_registry.py; these are the records on their own (pure).
"""

from __future__ import annotations

import datetime as dt
import json
import pickle

import pytest

from prefab_mlops.core.errors import ContractError
from prefab_mlops.core.manifest import FeatureRecord, GateRecord, ModelVersion
from prefab_mlops.core.schema import CATEGORY_CAP, ColumnKind, ColumnSpec, InputSchema

SCHEMA = InputSchema((
    ColumnSpec("distance", ColumnKind.NUMERIC, "int64"),
    ColumnSpec.categorical("origin", ["LGA", "EWR", "JFK"]),
    ColumnSpec("time_hour", ColumnKind.DATETIME, "datetime64[us, UTC]"),
))


class TestInputSchemaJson:
    def test_layout_is_an_ordered_list_of_columns(self) -> None:
        assert SCHEMA.to_json() == {"columns": [
            {"name": "distance", "kind": "numeric", "dtype": "int64"},
            {"name": "origin", "kind": "categorical", "dtype": "str",
             "categories": ["EWR", "JFK", "LGA"], "capped": False},
            {"name": "time_hour", "kind": "datetime", "dtype": "datetime64[us, UTC]"}]}

    def test_round_trip_through_json_text(self) -> None:
        back = InputSchema.from_json(json.loads(json.dumps(SCHEMA.to_json())))
        assert back == SCHEMA and back.names == ("distance", "origin", "time_hour")
        assert back["origin"].kind is ColumnKind.CATEGORICAL

    def test_the_schema_survives_pickling_with_its_lookups(self) -> None:
        assert SCHEMA["origin"].known_categories == {"EWR", "JFK", "LGA"}  # cached
        back = pickle.loads(pickle.dumps(SCHEMA))
        assert back == SCHEMA and back["origin"].known_categories == {"EWR", "JFK", "LGA"}


class TestInputSchemaLookups:
    def test_names_by_kind_and_membership(self) -> None:
        assert SCHEMA.names_of(ColumnKind.NUMERIC) == ["distance"]
        assert SCHEMA.names_of(ColumnKind.DATETIME) == ["time_hour"]
        assert "origin" in SCHEMA and "delayed" not in SCHEMA
        assert [s.name for s in SCHEMA] == list(SCHEMA.names) and len(SCHEMA) == 3
        with pytest.raises(KeyError):
            SCHEMA["delayed"]

    @pytest.mark.parametrize("dtype, tz", [
        ("datetime64[us, UTC]", dt.UTC), ("datetime64[ns, UTC]", dt.UTC),
        ("datetime64[ns]", None), ("object", dt.UTC), ("str", dt.UTC)])
    def test_zone_of_a_datetime_column(self, dtype: str, tz: dt.tzinfo | None) -> None:
        assert ColumnSpec("t", ColumnKind.DATETIME, dtype).tz is tz

    def test_named_zone(self) -> None:
        spec = ColumnSpec("t", ColumnKind.DATETIME, "datetime64[ns, America/New_York]")
        assert str(spec.tz) == "America/New_York"
        assert ColumnSpec("n", ColumnKind.NUMERIC, "int64").tz is None

    def test_categories_are_strings_sorted_and_capped(self) -> None:
        assert ColumnSpec.categorical("c", [3, "1", 2, 3]).categories == ("1", "2", "3")
        many = ColumnSpec.categorical("c", range(CATEGORY_CAP + 1))
        assert many.capped and len(many.categories) == CATEGORY_CAP
        assert many.known_categories is None
        assert ColumnSpec.categorical("c", []).known_categories is None


class TestRefusedShapes:
    def test_a_numeric_column_has_no_categories(self) -> None:
        with pytest.raises(ValueError, match="numeric, so it has no categories"):
            ColumnSpec("d", ColumnKind.NUMERIC, "int64", ("a",))

    def test_an_unknown_time_zone_is_refused_when_read(self) -> None:
        with pytest.raises(ContractError, match=r"columns\[0\]'.*time zone is unknown"):
            InputSchema.from_json({"columns": [{
                "name": "t", "kind": "datetime", "dtype": "datetime64[ns, Mars/Olympus]"}]})

    def test_a_column_is_listed_once(self) -> None:
        spec = ColumnSpec("d", ColumnKind.NUMERIC, "int64")
        with pytest.raises(ValueError, match="'d' is listed twice"):
            InputSchema((spec, spec))

    def test_more_categories_than_the_cap_are_refused(self) -> None:
        with pytest.raises(ContractError, match=r"columns\[0\]': column 'c' has 1001"):
            InputSchema.from_json({"columns": [{
                "name": "c", "kind": "categorical", "dtype": "str",
                "categories": [str(i) for i in range(CATEGORY_CAP + 1)]}]})

    @pytest.mark.parametrize("classes, ok", [
        ([False, True], True), ([0, 1, 2], True), (["a", "b"], True), (None, True),
        ([{"a": 1}], False)])
    def test_class_labels_keep_their_json_type(self, classes, ok: bool) -> None:
        data = FeatureRecord(input_schema=SCHEMA).to_json() | {"classes": classes}
        if not ok:
            with pytest.raises(ContractError, match=r"features\.classes\[0\]"):
                FeatureRecord.from_json(data, "features")
            return
        back = FeatureRecord.from_json(data, "features").classes
        assert back == classes and [type(c) for c in back or []] == [
            type(c) for c in classes or []]

    def test_a_required_field_and_a_whole_record_are_named(self) -> None:
        with pytest.raises(ContractError, match="field 'gate.passed' is missing"):
            GateRecord.from_json({"summary": "passed"}, "gate")
        with pytest.raises(ContractError, match=r"field '\(root\)': expected an object"):
            ModelVersion.from_json([1, 2])

    def test_the_error_survives_pickling(self) -> None:
        err = ContractError("field 'x': expected a string, found 1", "x", fix="rewrite x")
        back = pickle.loads(pickle.dumps(err))
        assert (back.field, back.fix, str(back)) == ("x", "rewrite x", str(err))
