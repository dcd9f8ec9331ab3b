"""Timestamps are instants, not strings."""

from __future__ import annotations

import pytest

from labelbridge.model.times import parse_timestamp


def test_timestamps_are_instants_not_strings():
    assert parse_timestamp("2026-11-22T12:00:00Z") == parse_timestamp("2026-11-22T14:00:00+02:00")
    assert parse_timestamp("2026-11-22T12:00:00.5Z") > parse_timestamp(
        "2026-11-22T12:00:00.123456Z")
    assert parse_timestamp("2026-11-22T12:00:00.123456789Z") == parse_timestamp(
        "2026-11-22T12:00:00.123456Z")
    assert parse_timestamp("2026-11-22 12:00:00") == parse_timestamp("2026-11-22T12:00:00Z")
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00"])
def test_an_instant_outside_the_years_1_to_9999_in_utc_is_refused(value):
    with pytest.raises(ValueError, match="years 1 to 9999"):
        parse_timestamp(value)
