"""bLIP-52 opening fee: the spec's worked example, the C routine's overflow semantics, the
promise, the menu order rule and our policy cap."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.jit_channels.fees import (
    U64_MAX,
    FeeMenuEntry,
    OpeningFeeParams,
    compute_opening_fee,
    fee_within_policy,
    make_promise,
    menu_is_ordered,
    promise_holds,
    with_promise,
)

SECRET = bytes(range(32))
u64 = st.integers(min_value=0, max_value=U64_MAX)


def c_routine(size: int, min_fee: int, proportional: int) -> int | None:
    """A line-by-line transcription of the spec's C ``compute_opening_fee``: uint64_t wraps,
    and ``ov_mul``/``ov_add`` detect the wrap the way the C does (division and compare)."""
    mask = U64_MAX
    prod = (size * proportional) & mask
    if size != 0 and prod // size != proportional:
        return None
    total = (prod + 999999) & mask
    if total < prod:
        return None
    fee = total // 1000000
    return min_fee if fee < min_fee else fee


def params(**over: object) -> OpeningFeeParams:
    base: dict[str, object] = {
        "min_fee_msat": 546000,
        "proportional": 1200,
        "valid_until": "2023-02-23T08:47:30.511Z",
        "min_lifetime": 1008,
        "max_client_to_self_delay": 2016,
        "min_payment_size_msat": 1000,
        "max_payment_size_msat": 1000000,
        "promise": "",
    }
    base.update(over)
    return msgspec.convert(base, OpeningFeeParams)


def test_spec_example_min_fee_applies() -> None:
    # conformance README: 42000 msat at 1200 ppm is 51 msat proportional; the minimum wins.
    assert compute_opening_fee(42000, 546000, 1200) == 546000


def test_rounds_up_not_down_and_divides_by_a_million() -> None:
    # 1_000_001 * 1 ppm = 1.000001 msat -> 2 (ceil); the typo'd 10_000_000 divisor would give 1.
    assert compute_opening_fee(1_000_001, 0, 1) == 2
    assert compute_opening_fee(1_000_000, 0, 1) == 1
    assert compute_opening_fee(10_000_000_000, 0, 2400) == 24_000_000
    assert compute_opening_fee(0, 0, 5000) == 0


def test_overflow_of_the_product_and_of_the_rounding_addition_fail() -> None:
    assert compute_opening_fee(U64_MAX, 0, 2) is None
    # The product fits, the + 999999 does not: the spec checks that addition too.
    assert compute_opening_fee(U64_MAX - 999998, 0, 1) is None
    assert compute_opening_fee(U64_MAX - 999999, 0, 1) == (U64_MAX - 999999 + 999999) // 10**6


@settings(max_examples=500, derandomize=True)
@given(size=u64, min_fee=u64, proportional=st.one_of(st.integers(0, 1_000_000), u64))
def test_matches_the_c_routine_everywhere(size: int, min_fee: int, proportional: int) -> None:
    assert compute_opening_fee(size, min_fee, proportional) == c_routine(
        size, min_fee, proportional
    )


@settings(max_examples=200, derandomize=True)
@given(size=st.integers(1, 2**40), min_fee=st.integers(0, 2**30), ppm=st.integers(0, 10**6))
def test_fee_is_the_ceiling_and_never_below_the_minimum(size: int, min_fee: int, ppm: int) -> None:
    fee = compute_opening_fee(size, min_fee, ppm)
    assert fee is not None
    assert fee >= min_fee
    proportional = -(-size * ppm // 10**6)
    assert fee == max(min_fee, proportional)


def test_promise_commits_to_every_field_and_needs_the_secret() -> None:
    promised = with_promise(SECRET, params())
    assert promise_holds(SECRET, promised)
    assert len(promised.promise) == 64 and promised.promise.isascii()
    assert not promise_holds(bytes(32), promised)
    for field, value in [
        ("min_fee_msat", 546001),
        ("proportional", 1199),
        ("valid_until", "2023-02-23T08:47:30.512Z"),
        ("min_lifetime", 1009),
        ("max_client_to_self_delay", 2017),
        ("min_payment_size_msat", 999),
        ("max_payment_size_msat", 1000001),
    ]:
        assert not promise_holds(SECRET, msgspec.structs.replace(promised, **{field: value}))


def test_a_short_secret_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        make_promise(b"short", params())


def entry(min_fee: int, ppm: int) -> FeeMenuEntry:
    return FeeMenuEntry(
        min_fee_msat=min_fee,
        proportional=ppm,
        valid_for_s=3600,
        min_lifetime=1008,
        max_client_to_self_delay=2016,
        min_payment_size_msat=1000,
        max_payment_size_msat=10**9,
    )


def test_menu_order_rule_of_the_spec() -> None:
    # The spec's example menu: larger min fee AND larger proportional.
    assert menu_is_ordered([entry(546000, 1200), entry(1092000, 2400)])
    assert menu_is_ordered([entry(1, 5), entry(2, 5), entry(2, 6)])
    assert not menu_is_ordered([entry(2, 5), entry(1, 6)])
    assert not menu_is_ordered([entry(1, 5), entry(1, 5)])


def test_policy_cap_absolute_and_relative() -> None:
    ok = {"fee_max_msat": 1_000_000, "fee_max_ppm": 50_000}
    assert fee_within_policy(opening_fee_msat=546000, payment_size_msat=20_000_000, **ok)
    assert not fee_within_policy(opening_fee_msat=1_000_001, payment_size_msat=10**12, **ok)
    # 546000 of 10_000_000 is 5.46 %: above a 5 % cap.
    assert not fee_within_policy(opening_fee_msat=546000, payment_size_msat=10_000_000, **ok)
