import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.billing.ledger.rules import Pricing
from services.billing.prices.rules import (
    DEFAULT_EPOCH,
    PriceBook,
    PriceVersion,
    RetroactivePrice,
    UnbillablePrice,
    check_after_billed,
    check_billable,
    check_not_retroactive,
    default_price_id,
    environment_default,
    in_force,
    latest_default,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COMPANY = uuid.uuid4()


def version(at: datetime, price: str, *, company: uuid.UUID | None = COMPANY, seq: int = 0):
    return PriceVersion(uuid.uuid4(), company, Pricing(Decimal(price)), at, seq)


def test_the_version_in_force_is_the_latest_effective_at_or_before_the_instant() -> None:
    old, new = version(T0, "0.10", seq=1), version(T0 + timedelta(days=1), "0.20", seq=2)
    assert in_force([new, old], T0 - timedelta(seconds=1)) is None
    assert in_force([new, old], T0) == old
    assert in_force([new, old], T0 + timedelta(days=1) - timedelta(microseconds=1)) == old
    assert in_force([new, old], T0 + timedelta(days=1)) == new
    assert in_force([new, old], T0 + timedelta(days=30)) == new


def test_of_two_versions_from_the_same_instant_the_later_added_wins() -> None:
    first, second = version(T0, "0.10", seq=1), version(T0, "0.30", seq=2)
    assert in_force([second, first], T0) == second
    assert in_force([first, second], T0) == second


def test_a_company_pays_the_default_until_its_own_version_is_in_force() -> None:
    default = version(DEFAULT_EPOCH, "0.10", company=None, seq=1)
    own = version(T0, "0.15", seq=2)
    book = PriceBook.of([default, own])
    assert book.price_at(COMPANY, T0 - timedelta(seconds=1)) == default
    assert book.price_at(COMPANY, T0) == own
    assert book.price_at(uuid.uuid4(), T0) == default


def test_the_environment_price_is_the_default_since_the_epoch_with_a_stable_id() -> None:
    assert PriceBook.of([]).price_at(COMPANY, T0) is None  # before billing first started
    price = environment_default(Pricing(Decimal("0.25"), Decimal("10")))
    assert price.is_default
    assert price.effective_from == DEFAULT_EPOCH
    assert price.price_id == default_price_id(price.pricing, DEFAULT_EPOCH)
    assert PriceBook.of([price]).price_at(COMPANY, T0) == price


def test_default_price_ids_are_stable_and_spelling_free() -> None:
    a = default_price_id(Pricing(Decimal("0.10"), Decimal("0")), DEFAULT_EPOCH)
    b = default_price_id(Pricing(Decimal("0.1000"), Decimal("0.00")), DEFAULT_EPOCH)
    # Documented (docs/operations.md): the first default at the environment's 0.10, 0%.
    assert a == b == uuid.UUID("87733cdb-60f4-5ae8-baae-7793a1d380b3")
    assert default_price_id(Pricing(Decimal("0.20")), DEFAULT_EPOCH) != a
    assert default_price_id(Pricing(Decimal("0.10")), T0) != a


def test_a_price_may_start_at_the_requests_time_or_later_never_before() -> None:
    check_not_retroactive(T0, T0)
    check_not_retroactive(T0 + timedelta(seconds=5), T0)
    with pytest.raises(RetroactivePrice, match="never re-priced"):
        check_not_retroactive(T0 - timedelta(microseconds=1), T0)


def test_a_price_starts_after_every_generation_already_billed() -> None:
    check_after_billed(T0, None)  # nothing billed yet
    check_after_billed(T0, T0 - timedelta(microseconds=1))
    for billed in (T0, T0 + timedelta(seconds=1)):
        with pytest.raises(RetroactivePrice, match="already billed"):
            check_after_billed(T0, billed)


def test_the_latest_default_is_the_last_to_start_then_the_last_added() -> None:
    assert latest_default([]) is None
    first = version(DEFAULT_EPOCH, "0.1000", company=None, seq=1)
    later = version(T0, "0.12", company=None, seq=2)
    same_start = version(T0, "0.15", company=None, seq=3)
    assert latest_default([later, first]) == later
    assert latest_default([same_start, first, later]) == same_start


def test_a_price_is_billable_only_if_the_largest_generation_fits_a_usage_row() -> None:
    check_billable(Pricing(Decimal("199999.9999")))
    with pytest.raises(UnbillablePrice):
        check_billable(Pricing(Decimal("200000.0000")))
    with pytest.raises(UnbillablePrice):
        check_billable(Pricing(Decimal("100000"), Decimal("100")))
