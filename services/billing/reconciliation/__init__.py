"""Reconciliation: billing's ledger of LLM calls against the provider's own usage reports.

Per UTC day and model, the calls billing kept (`llm_calls`) against OpenAI's
organization usage API, so that a call billing never heard of (a retry the SDK made,
a timeout that still ran) shows as drift, not as a surprise on the invoice.

- `rules.py`: pure: the figures, the statuses, the tolerance, the ranges;
- `provider.py`: the usage API, read a page at a time, retried when it may help;
- `store.py`: every SQL statement; `run.py`: one run over a range, under a lock;
- `schedule.py`: the daily run (one process of all, by the lock) and operators' runs;
- `api.py`, `schemas.py`: the operator's routes; `__main__.py`: `make reconcile`.
"""
