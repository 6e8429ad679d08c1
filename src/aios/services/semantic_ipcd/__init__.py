"""semantic-ipcd: routing intents to skills (core.py is its sans-IO core)."""
