"""Well-known capability slots: what every agent holds when it starts.

The kernel installs these in this order at spawn; the SDK defaults to them.
Nothing else writes a slot number as a literal.
"""

from __future__ import annotations

from typing import Final

SLOT_SELF: Final = 0  # AGENT: itself
SLOT_MAILBOX: Final = 1  # ENDPOINT: its own mailbox (READ | WRITE | GRANT)
SLOT_AUTHORITY: Final = 2  # AUTHORITY: rights and quotas it was spawned with
SLOT_DIRECTORY: Final = 3  # DIRECTORY: name service (READ lookup, WRITE register)
SLOT_EVENTS: Final = 4  # TOPIC: the event bus (READ subscribe, WRITE publish under app.)
SLOT_PARENT: Final = 5  # ENDPOINT: its parent's mailbox (WRITE), badged with its own id
FIRST_FREE_SLOT: Final = 6
