"""The kernel journal: durable kernel state in SQLite, replay, signed agent archives and durable
event delivery (see ``docs/journal.md``)."""
