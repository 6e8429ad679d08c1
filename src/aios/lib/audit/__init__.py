"""The tamper-evident audit log: RFC 6962 Merkle tree (merkle), SQLite store
with group commit (log), C2SP signed checkpoints (checkpoint) and the event-bus
subscriber that feeds it (recorder)."""
