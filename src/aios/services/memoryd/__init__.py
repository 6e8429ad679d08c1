"""memoryd: the semantic memory fabric service (core.py is its sans-IO core)."""
