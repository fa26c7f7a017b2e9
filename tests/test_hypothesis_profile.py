"""Hypothesis never fails a test on a timing: every @given runs without a deadline."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@given(st.integers())
def test_given_without_settings_has_no_deadline(n: int) -> None:
    assert settings.default.deadline is None


@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers())
def test_settings_without_a_deadline_inherit_none(n: int) -> None:
    assert settings.default.deadline is None


def test_the_decode_properties_carry_no_deadline() -> None:
    from tests.ingest import test_decode

    for t in (
        test_decode.test_good_events_decode_like_the_full_codec,
        test_decode.test_c_reader_agrees_with_python,
        test_settings_without_a_deadline_inherit_none,
    ):
        assert t._hypothesis_internal_use_settings.deadline is None, t.__name__  # type: ignore[attr-defined]
