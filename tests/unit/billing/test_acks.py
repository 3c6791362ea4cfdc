from services.billing.acks import SettledTags


def test_nothing_is_acknowledged_before_it_is_settled() -> None:
    tags = SettledTags()
    for tag in (1, 2, 3):
        tags.received(tag)
    assert tags.acknowledgeable() is None


def test_one_ack_covers_a_settled_run_from_the_lowest_tag() -> None:
    tags = SettledTags()
    for tag in range(1, 6):
        tags.received(tag)
    for tag in (1, 2, 3):
        tags.settle(tag)
    assert tags.acknowledgeable() == 3
    assert tags.acknowledgeable() is None  # already covered
    assert len(tags) == 2


def test_an_unsettled_message_holds_back_every_later_tag() -> None:
    tags = SettledTags()
    for tag in range(1, 6):
        tags.received(tag)
    for tag in (1, 3, 4, 5):
        tags.settle(tag)
    assert tags.acknowledgeable() == 1  # 2 is still being committed
    tags.settle(2)
    assert tags.acknowledgeable() == 5


def test_tags_received_out_of_order_are_still_covered_in_order() -> None:
    tags = SettledTags()
    for tag in (3, 1, 2):
        tags.received(tag)
    tags.settle(3)
    assert tags.acknowledgeable() is None  # 1 and 2 are not settled: 3 must wait
    tags.settle(1)
    assert tags.acknowledgeable() == 1
    tags.settle(2)
    assert tags.acknowledgeable() == 3
