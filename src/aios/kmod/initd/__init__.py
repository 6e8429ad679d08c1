"""initd: units with systemd's semantics, driven by a sans-IO engine (see ``docs/initd.md``)."""
