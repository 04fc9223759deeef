"""The domain's fixed vocabulary and bounds, shared by every layer (the store's
constraints, the engine's checks, the CLI's early checks). It imports nothing, so the
CLI can read it before anything heavy is loaded. The migrations keep their own frozen
copies: a released revision must not change when these do."""

from __future__ import annotations

# The largest amount, TTL or cap: PostgreSQL's INTEGER.
MAX_AMOUNT = 2_147_483_647
# GPUs per pool, each a row of pool_devices.
MAX_DEVICES = 65_536
RESOURCES = ("cpu", "memory", "gpu")
STATUSES = ("active", "released", "expired", "preempted")
# What a reservation shows (README "Booking ahead"): an active one that has not
# started yet shows `upcoming`; it is stored as active.
SHOWN_STATUSES = ("upcoming", *STATUSES)
ACTIVE = "active"
PRIORITY_RANGE = (1, 10)
DEFAULT_PRIORITY = 5
