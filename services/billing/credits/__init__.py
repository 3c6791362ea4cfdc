"""Prepaid credits: grants that burn down in a known order, never overdrawn."""
