"""The ledger, billing's write side: consume events, record usage once, reconcile drafts."""
