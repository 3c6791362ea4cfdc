"""The billing subscriber: one quorum queue, both events, acknowledged by hand after commit."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitMessage
from faststream.rabbit.subscriber import RabbitSubscriber

from contracts.topology import Topology
from services.billing.intake import Intake


async def keep_body(message: RabbitMessage) -> bytes:
    """Hand the handler the raw bytes: parsing (and telling poison apart) is billing's job."""
    return message.body


def subscribe(broker: RabbitBroker, topology: Topology, intake: Intake) -> RabbitSubscriber:
    # MANUAL: FastStream's default would reject a message whose handler raised, and a
    # rejected message is dropped (revenue lost). Intake acknowledges only after commit.
    subscriber = broker.subscriber(
        topology.billing_queue(),
        ack_policy=AckPolicy.MANUAL,
        decoder=keep_body,
        title=f"{topology.billing_queue_name}:consume",
    )

    @subscriber
    async def on_event(body: bytes, message: RabbitMessage) -> None:
        await intake.handle(message)

    return subscriber
