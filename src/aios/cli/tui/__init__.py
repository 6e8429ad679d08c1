"""Terminal views of a running kernel (``aios top``): a pure model, a daemon source, a Textual app.

Textual is the ``tui`` extra and is imported only by :mod:`aios.cli.tui.app`,
which only ``aios top`` loads."""
