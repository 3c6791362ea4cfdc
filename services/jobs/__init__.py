"""Jobs service: stores jobs and announces each one, with the draft it came from."""
