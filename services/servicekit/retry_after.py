"""How long a server that refused a request (429, 503) asks us to wait."""

from __future__ import annotations

import math
from collections.abc import Mapping


def server_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait (`retry-after-ms`, then `retry-after`), if any.

    An HTTP date in `retry-after` is not read: the backoff applies instead.
    """
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        try:
            seconds = float(value) / divisor if value is not None else math.nan
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None
