"""Reading a child process's output with a real deadline.

``for line in proc.stdout`` blocks until the child writes a line or closes
the pipe, so a deadline checked inside that loop never fires for a child that
has gone quiet.  :class:`LineReader` moves the blocking reads to a daemon
thread and hands lines over a queue; :meth:`LineReader.next` waits at most
until the deadline and raises ``TimeoutError`` naming what it was waiting for.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import IO


class LineReader:
    """Lines of ``stream`` (a text pipe), each awaited with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._q.put(line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            self._q.put(None)

    def next(self, deadline: float, what: str = "a line") -> str | None:
        """The next line, or None at end of stream; TimeoutError once ``deadline``
        (a ``time.monotonic()`` value) passes first."""
        left = deadline - time.monotonic()
        try:
            return self._q.get(timeout=max(left, 0.0))
        except queue.Empty:
            raise TimeoutError(f"no {what} before the deadline") from None
