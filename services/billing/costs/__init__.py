"""The cost of goods: what every LLM call cost the operator, billed or not, and the margin.

`calls.py` keeps each `LlmCallFinished` once (the ledger calls it for a batch's calls),
priced by the model price book (`book.py`, `rules.py`) at its occurredAt; `keep.py` is
the batch's effect on the margin rollups (`margins.py`); `repricing.py` re-prices the
calls a version added for the past now covers; `api.py` is the operator's API
(`platform:admin` only); `check.py` recomputes the rollups from the rows.
"""
