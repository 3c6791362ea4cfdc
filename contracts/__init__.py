"""Event contracts shared by every service: the one source of truth for the wire format."""

from contracts.events import Event, JobCreated, QuestionsGenerated
from contracts.topology import JOB_CREATED, QUESTIONS_GENERATED, Topology

__all__ = [
    "JOB_CREATED",
    "QUESTIONS_GENERATED",
    "Event",
    "JobCreated",
    "QuestionsGenerated",
    "Topology",
]
