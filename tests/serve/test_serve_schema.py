"""prefab_mlops.serve/schema.py: request validation against a model's input schema (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from prefab_mlops.core.errors import ContractError
from prefab_mlops.core.schema import CATEGORY_CAP, ColumnKind, ColumnSpec, InputSchema
from prefab_mlops.serve.errors import RequestInvalid
from prefab_mlops.serve.schema import MAX_ERRORS, RecordValidator

SCHEMA = InputSchema((
    ColumnSpec("distance", ColumnKind.NUMERIC, "int64"),
    ColumnSpec.categorical("carrier", ["UA", "AA"]),
    ColumnSpec("time_hour", ColumnKind.DATETIME, "datetime64[us, UTC]"),
))
GOOD = {"distance": 1400, "carrier": "UA", "time_hour": "2013-01-01T05:00:00-05:00"}


def validator(**kw) -> RecordValidator:
    return RecordValidator(SCHEMA, ["time_hour", "distance", "carrier", "flight", "delayed"],
                           "delayed", **kw)


def datetime_column(dtype: str) -> InputSchema:
    return InputSchema((ColumnSpec("t", ColumnKind.DATETIME, dtype),))


def errors(payload, **kw) -> list[dict]:
    with pytest.raises(RequestInvalid) as exc:
        validator(**kw).validate(payload)
    return exc.value.errors


def nested(depth: int, leaf=1, key: str | None = None):
    """``leaf`` inside ``depth`` arrays (or objects under ``key``), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if key is None else {key: value}
    return value


class TestShapes:
    def test_one_record_many_records_and_wrapper(self) -> None:
        v = validator()
        assert v.validate(GOOD).rows == 1
        assert v.validate([GOOD, GOOD]).rows == 2
        assert v.validate({"records": [GOOD] * 3}).rows == 3

    def test_columns_are_normalised(self) -> None:
        out = validator().validate([GOOD, {"distance": None, "carrier": None,
                                           "time_hour": None}])
        assert out.columns["distance"] == [1400, None]
        assert out.columns["carrier"] == ["UA", None]
        assert out.columns["time_hour"] == [dt.datetime(2013, 1, 1, 10, tzinfo=dt.UTC), None]

    def test_limits(self) -> None:
        assert errors([])[0]["type"] == "too_short"
        err = errors([GOOD] * 4, max_rows=3)[0]
        assert err["type"] == "too_long" and err["ctx"] == {"max_rows": 3, "rows": 4}
        assert errors({"records": "x"})[0]["type"] == "list_type"
        assert errors("x")[0]["type"] == "model_type"

    def test_errors_are_capped_but_counted(self) -> None:
        with pytest.raises(RequestInvalid) as exc:
            validator(max_rows=1000).validate([{"distance": "x"}] * 100)
        assert len(exc.value.errors) == MAX_ERRORS and exc.value.total == 300


class TestValues:
    @pytest.mark.parametrize("value", ["12", True, [1], {"a": 1}])
    def test_numeric_needs_a_number(self, value) -> None:
        err = errors({**GOOD, "distance": value})[0]
        assert err["type"] == "number_type" and err["loc"] == ["body", "distance"]

    def test_unknown_category_rejected_or_flagged(self) -> None:
        err = errors({**GOOD, "carrier": "ZZ"})[0]
        assert err["type"] == "unknown_category" and err["ctx"]["allowed"] == ["AA", "UA"]
        out = validator(unknown_category="accept").validate([GOOD, {**GOOD, "carrier": "ZZ"}])
        assert out.columns["carrier"] == ["UA", "ZZ"]
        assert out.warnings == [{"row": 1, "field": "carrier", "value": "ZZ",
                                 "type": "unknown_category"}]

    def test_capped_category_list_is_not_enforced(self) -> None:
        capped = ColumnSpec.categorical("c", [f"k{i:04d}" for i in range(CATEGORY_CAP + 1)])
        assert capped.capped and len(capped.categories) == CATEGORY_CAP
        v = RecordValidator(InputSchema((capped,)), [], None)
        assert v.validate({"c": "new"}).columns["c"] == ["new"]
        assert v.validate([{"c": "new"}, {"c": None}]).columns["c"] == ["new", None]

    def test_a_complete_list_of_cap_many_categories_is_enforced(self) -> None:
        full = ColumnSpec.categorical("c", [f"k{i:04d}" for i in range(CATEGORY_CAP)])
        assert not full.capped
        v = RecordValidator(InputSchema((full,)), [], None)
        with pytest.raises(RequestInvalid) as exc:
            v.validate({"c": "new"})
        assert exc.value.errors[0]["type"] == "unknown_category"
        assert v.validate({"c": "k0999"}).columns["c"] == ["k0999"]

    @pytest.mark.parametrize("text, expected", [
        ("2013-01-01T05:00:00Z", dt.datetime(2013, 1, 1, 5, tzinfo=dt.UTC)),
        ("2013-01-01 05:00:00", dt.datetime(2013, 1, 1, 5, tzinfo=dt.UTC)),
        ("2013-01-01", dt.datetime(2013, 1, 1, tzinfo=dt.UTC)),
        ("2013-01-01T05:00:00+02:00", dt.datetime(2013, 1, 1, 3, tzinfo=dt.UTC)),
    ])
    def test_datetimes_in_the_training_zone(self, text: str, expected: dt.datetime) -> None:
        out = validator().validate({**GOOD, "time_hour": text})
        assert out.columns["time_hour"] == [expected]

    def test_naive_training_column_keeps_wall_clock(self) -> None:
        v = RecordValidator(datetime_column("datetime64[ns]"), [], None)
        assert v.validate({"t": "2013-01-01T05:00:00"}).columns["t"] == [
            dt.datetime(2013, 1, 1, 5)]
        assert v.validate({"t": "2013-01-01T05:00:00-05:00"}).columns["t"] == [
            dt.datetime(2013, 1, 1, 10)]

    @pytest.mark.parametrize("value", ["yesterday", "01/02/2013", 1357016400])
    def test_bad_datetimes(self, value) -> None:
        assert errors({**GOOD, "time_hour": value})[0]["type"] == "datetime_parsing"

    @pytest.mark.parametrize("dtype, text", [
        # an offset that moves the instant past year 1 or 9999 (was an OverflowError: 500)
        ("datetime64[us, UTC]", "0001-01-01T00:00:00+01:00"),
        ("datetime64[us, UTC]", "9999-12-31T23:59:59-01:00"),
        ("datetime64[ns]", "0001-01-01T00:00:00+01:00"),  # naive training column
        ("datetime64[ns, Asia/Tokyo]", "9999-12-31T23:00:00"),  # read as UTC, then Tokyo
        ("datetime64[ns, America/New_York]", "0001-01-01T00:00:00"),
        # parses, but outside what a pandas datetime64[ns] column holds
        ("datetime64[us, UTC]", "0001-01-01T00:00:00Z"),
        ("datetime64[us, UTC]", "1677-09-21T23:59:59Z"),
        ("datetime64[us, UTC]", "2262-04-11T00:00:00Z"),
        ("datetime64[ns]", "9999-12-31"),
    ])
    def test_datetime_out_of_range_is_a_field_error(self, dtype: str, text: str) -> None:
        v = RecordValidator(datetime_column(dtype), [], None)
        for payload, loc in (({"t": text}, ["body", "t"]),
                             ([{"t": None}, {"t": text}], ["body", 1, "t"])):
            with pytest.raises(RequestInvalid) as exc:
                v.validate(payload)
            err = exc.value.errors[0]
            assert err["type"] == "datetime_range" and err["loc"] == loc, err
            assert err["msg"].startswith(f"'t' = '{text}' is out of range: expected a "
                                         "date-time from 1677-09-22 to 2262-04-10"), err
            assert err["ctx"] == {"min": "1677-09-22T00:00:00",
                                  "max": "2262-04-10T23:59:59.999999"}
        # the bounds themselves are accepted, in every zone
        for edge in ("1677-09-22T00:00:00Z", "2262-04-10T23:59:59.999999+00:00"):
            assert v.validate({"t": edge}).rows == 1


class TestMessages:
    """Every message quotes a user value through :func:`preview`: short, never recursive."""

    @pytest.mark.parametrize("field, kind", [
        ("distance", "number_type"), ("carrier", "string_type"),
        ("time_hour", "datetime_parsing")])
    @pytest.mark.parametrize("value", [nested(5000), nested(5000, key="a")],
                             ids=["array", "object"])
    def test_deeply_nested_value_is_a_field_error(self, field: str, kind: str,
                                                  value) -> None:
        # 1000 levels raised RecursionError (a 500) while the message built repr(value)
        err = errors([{**GOOD, field: value}])[0]
        assert err["type"] == kind and err["loc"] == ["body", 0, field]
        assert err["msg"].endswith("([[[...]]])" if isinstance(value, list) else
                                   "({'a': {'a': {...}}})"), err["msg"]

    def test_huge_and_long_values_are_cut(self) -> None:
        err = errors({**GOOD, "carrier": 10**5000})[0]  # repr refuses > 4300 digits
        assert err["type"] == "string_type" and "(<16610-bit integer>)" in err["msg"]
        err = errors({**GOOD, "carrier": "Z" * 1_000_000})[0]
        assert err["type"] == "unknown_category" and len(err["msg"]) < 200
        err = errors({**GOOD, "k" * 100_000: 1})[0]
        assert err["type"] == "extra_forbidden" and len(err["msg"]) < 400

    def test_preview(self) -> None:
        from prefab_mlops.serve.schema import preview

        assert preview([1]) == "[1]" and preview({"a": 1}) == "{'a': 1}"
        assert preview("ZZ") == "'ZZ'" and preview("a\x00b") == "'a\\x00b'"
        assert preview({f"k{i}": i for i in range(10)}) == "{'k0': 0, 'k1': 1, 'k2': 2, ...}"
        assert preview(nested(10**5)) == "[[[...]]]"
        assert all(len(preview(v)) <= 40 for v in ("x" * 10**6, 10**300, [["y" * 99] * 9]))


class TestFields:
    def test_missing_field_is_an_error_but_null_is_a_value(self) -> None:
        err = errors([{"distance": 1, "carrier": "AA"}])[0]
        assert err == {"loc": ["body", 0, "time_hour"], "type": "missing",
                       "msg": "field 'time_hour' is required (datetime; send null for a "
                              "missing value)"}

    def test_training_columns_are_accepted_extras(self) -> None:
        out = validator().validate([GOOD, {**GOOD, "flight": 7}])
        assert out.extras == {"flight": [None, 7]}

    def test_target_and_unknown_fields(self) -> None:
        locs = [e["loc"] for e in errors([{**GOOD, "delayed": True, "surprise": 1}])]
        assert locs == [["body", 0, "delayed"], ["body", 0, "surprise"]]
        out = validator(extra_fields="ignore").validate({**GOOD, "surprise": 1})
        assert out.extras == {} and out.rows == 1

    def test_unknown_kind_is_refused_where_the_schema_is_read(self) -> None:
        with pytest.raises(ContractError, match=r"columns\[0\]\.kind': expected one of"):
            InputSchema.from_json({"columns": [{"name": "x", "kind": "image", "dtype": ""}]})
