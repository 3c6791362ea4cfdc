"""The garbage collector of a long-running service process, set once start-up is done.

CPython's defaults (a young collection every 700 net allocations of container
objects, a full one every 100 of those) are made for short scripts. A service
allocates a few hundred containers per request and keeps the objects of start-up
(modules, models, schemas: about 150,000) for its whole life, so under load it
collects young objects about 80 times a second and traverses every start-up object
in each full collection. Measured in `generation_at_llm_latency` at 100 connections:
about 1.8 s of a 15 s run in the collector, full collections of 100 to 140 ms each
(a pause every request in flight waits for); after `tune()`, under 0.1 s and no full
collection (docs/benchmarks.md).

- The objects of start-up are frozen (`gc.freeze`): never traversed again.
- Young collections every 50,000 net allocations: requests' garbage is mostly freed by
  reference counting and never waits for the collector; cycles still are collected,
  a little later. Full collections stay (every 10 older ones), over what is not frozen.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)


def tune() -> None:
    """Collect what start-up left, freeze the rest, and make collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
