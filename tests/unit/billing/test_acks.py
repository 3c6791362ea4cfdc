from contracts.topology import Topology
from services.billing.acks import Acknowledger, SettledTags
from services.billing.worker import BillingConsumer


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


class FakeChannel:
    """Records the acknowledgements a real aiormq channel would write."""

    def __init__(self) -> None:
        self.is_closed = False
        self.frames: list[tuple[str, int, bool]] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.frames.append(("ack", delivery_tag, multiple))


class FakeMessage:
    def __init__(self, channel: FakeChannel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag

    async def nack(self, requeue: bool = True) -> None:
        self.channel.frames.append(("nack", self.delivery_tag, requeue))


async def test_one_multiple_ack_for_what_was_settled_together() -> None:
    channel = FakeChannel()
    acks = Acknowledger()
    messages = [FakeMessage(channel, tag) for tag in range(1, 6)]
    for message in messages:
        acks.received(message)  # type: ignore[arg-type]
    for message in messages[:3]:
        acks.settled(message)  # type: ignore[arg-type]
    await acks.drain()
    assert channel.frames == [("ack", 3, True)]


async def test_a_message_whose_handling_failed_is_returned_and_holds_nothing_back() -> None:
    channel = FakeChannel()
    acks = Acknowledger()
    first, failing, last = (FakeMessage(channel, tag) for tag in (1, 2, 3))

    class BrokenIntake:
        async def handle(self, message: FakeMessage) -> None:
            if message is failing:
                raise RuntimeError("dead letter not confirmed")
            acks.settled(message)  # type: ignore[arg-type]

    consumer = BillingConsumer(None, Topology(), BrokenIntake(), acks)  # type: ignore[arg-type]
    for message in (first, failing, last):
        await consumer._on_message(message)  # type: ignore[arg-type]
    await acks.drain()

    # 2 is given back before any ack that covers it; one ack then covers 1 and 3.
    acks_covering_2 = [
        i for i, (kind, tag, _) in enumerate(channel.frames) if kind == "ack" and tag >= 2
    ]
    assert channel.frames.index(("nack", 2, True)) < min(acks_covering_2)
    assert channel.frames[-1] == ("ack", 3, True)


async def test_nothing_is_acknowledged_on_a_closed_channel() -> None:
    channel = FakeChannel()
    acks = Acknowledger()
    message = FakeMessage(channel, 1)
    acks.received(message)  # type: ignore[arg-type]
    channel.is_closed = True  # the broker has taken the message back
    acks.settled(message)  # type: ignore[arg-type]
    await acks.drain()
    assert channel.frames == []
