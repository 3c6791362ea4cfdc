"""The cost of goods' pure rules: a call's provider cost, and which price a model has."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.billing.costs.book import read_shipped
from services.billing.costs.rules import (
    Call,
    ModelBook,
    ModelPrice,
    Rates,
    Tokens,
    format_cost,
    model_stem,
    price_names,
    provider_cost,
)

GPT_4O = Rates(Decimal("2.5000"), Decimal("1.2500"), Decimal("10.0000"))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def version(model: str, rates: Rates, since: datetime = EPOCH, sequence: int = 1) -> ModelPrice:
    return ModelPrice(uuid.uuid4(), model, rates, since, sequence)


def test_cached_prompt_tokens_are_priced_at_the_cached_price_and_counted_once() -> None:
    # 1,000 prompt tokens of which 400 cached; 200 completion tokens of which 150 reasoning.
    cost = provider_cost(
        GPT_4O, Tokens(prompt=1000, cached_prompt=400, completion=200, reasoning=150)
    )
    # 600 * 2.50 + 400 * 1.25 + 200 * 10.00 = 1500 + 500 + 2000 = 4000 per million.
    assert cost == Decimal("0.00400000")


def test_reasoning_tokens_are_output_and_already_in_the_completion_tokens() -> None:
    with_reasoning = provider_cost(GPT_4O, Tokens(0, 0, 1000, reasoning=900))
    without = provider_cost(GPT_4O, Tokens(0, 0, 1000, reasoning=0))
    assert with_reasoning == without == Decimal("0.01000000")


def test_the_cost_is_rounded_half_up_at_the_eighth_place() -> None:
    rates = Rates(Decimal("0.0050"), Decimal("0.0025"), Decimal("0.0150"))
    # 1 * 0.005 / 1e6 = 0.000000005: half of the 8th place, up.
    assert provider_cost(rates, Tokens(1, 0, 0)) == Decimal("0.00000001")
    # 1 * 0.0025 / 1e6 = 0.0000000025: below half, down.
    assert provider_cost(rates, Tokens(1, 1, 0)) == Decimal("0.00000000")
    # 3 * 0.0150 / 1e6 = 0.000000045 -> 0.00000005
    assert provider_cost(rates, Tokens(0, 0, 3)) == Decimal("0.00000005")
    assert format_cost(Decimal("0.1")) == "0.10000000"


def test_the_largest_call_the_contract_allows_fits_the_ledger() -> None:
    most = 2_147_483_647
    dearest = Rates(Decimal("100000"), Decimal("100000"), Decimal("100000"))
    cost = provider_cost(dearest, Tokens(most, 0, most))
    assert cost < Decimal("1e16")  # llm_calls.provider_cost is NUMERIC(24, 8)


@pytest.mark.parametrize(
    ("model", "stem"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o1-preview-2024-09-12", "o1-preview"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-5.1", "gpt-5.1"),
        ("my-model-12345", "my-model-12345"),  # five digits: not a date
        ("2024-08-06", "2024-08-06"),  # nothing would be left
    ],
)
def test_a_dated_snapshot_suffix_is_what_a_stem_drops(model: str, stem: str) -> None:
    assert model_stem(model) == stem


def test_a_model_is_priced_by_its_own_name_first_then_its_stem() -> None:
    assert price_names("gpt-4o") == ("gpt-4o",)
    assert price_names("gpt-4o-2024-08-06") == ("gpt-4o-2024-08-06", "gpt-4o")
    may = Rates(Decimal("5"), Decimal("5"), Decimal("15"))
    book = ModelBook([version("gpt-4o", GPT_4O), version("gpt-4o-2024-05-13", may)])
    now = datetime.now(UTC)
    found = book.price_for("gpt-4o-2024-05-13", now)
    assert found is not None
    assert found.rates == may
    found = book.price_for("gpt-4o-2024-08-06", now)
    assert found is not None
    assert found.rates == GPT_4O


def test_no_shorter_prefix_prices_another_model() -> None:
    book = ModelBook([version("gpt-4o", GPT_4O), version("gpt-4", GPT_4O)])
    assert book.price_for("gpt-4o-mini", datetime.now(UTC)) is None
    assert book.price_for("gpt-4o-mini-2024-07-18", datetime.now(UTC)) is None
    assert book.price_for("gpt-4.1", datetime.now(UTC)) is None


def test_the_version_in_force_at_the_calls_instant_prices_it() -> None:
    june = datetime(2026, 6, 1, tzinfo=UTC)
    cheaper = Rates(Decimal("1"), Decimal("0.5"), Decimal("4"))
    first = version("gpt-4o", GPT_4O, EPOCH, 1)
    later = version("gpt-4o", cheaper, june, 2)
    book = ModelBook([later, first])
    assert book.price_for("gpt-4o", datetime(2026, 5, 31, 23, 59, tzinfo=UTC)) == first
    assert book.price_for("gpt-4o", june) == later
    # Of two with the same effectiveFrom, the later added.
    again = version("gpt-4o", GPT_4O, june, 3)
    assert ModelBook([first, later, again]).price_for("gpt-4o", june) == again


def test_the_snapshots_own_name_wins_only_where_it_has_a_version_in_force() -> None:
    june = datetime(2026, 6, 1, tzinfo=UTC)
    own = version("gpt-4o-2024-08-06", Rates(Decimal("3"), Decimal("1"), Decimal("9")), june, 2)
    book = ModelBook([version("gpt-4o", GPT_4O), own])
    before = book.price_for("gpt-4o-2024-08-06", datetime(2026, 1, 1, tzinfo=UTC))
    assert before is not None
    assert before.model == "gpt-4o"
    assert book.price_for("gpt-4o-2024-08-06", june) == own


def test_a_model_with_no_price_is_unpriced_never_zero() -> None:
    call = Call(
        uuid.uuid4(),
        uuid.uuid4(),
        "acme-llm-1",
        "billed",
        uuid.uuid4(),
        Tokens(100, 0, 200),
        "provider",
        datetime.now(UTC),
        None,
        None,
    )
    priced = call.priced(
        ModelBook([version("gpt-4o", GPT_4O)]).price_for(call.model, call.occurred_at)
    )
    assert priced.provider_cost is None
    assert priced.model_price_id is None
    gpt = version("gpt-4o", GPT_4O)
    assert call.priced(gpt).provider_cost == Decimal("0.00225000")
    assert call.priced(gpt).model_price_id == gpt.model_price_id


def test_the_shipped_prices_name_their_source_and_the_day_they_were_read() -> None:
    shipped = read_shipped()
    assert shipped.source.startswith("https://")
    assert shipped.read_on.year >= 2025
    models = {price.model for price in shipped.prices}
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini", "gpt-5"} <= models
    assert len(models) == len(shipped.prices)  # one first version per model
    for price in shipped.prices:
        assert price.cached_input_per_1m <= price.input_per_1m, price.model
