"""The one loop shape of Tandem's background writers (request recording, MLOps reporting)."""

from __future__ import annotations

import queue
import threading
from typing import TypeVar

T = TypeVar("T")


def next_batch(
    q: queue.Queue[T], stopping: threading.Event, limit: int, poll: float = 0.2
) -> list[T] | None:
    """Wait for one item, then take what else is queued, up to ``limit`` in all.

    None once ``stopping`` is set and the queue is empty: the writer thread may end.
    """
    while True:
        try:
            first = q.get(timeout=poll)
            break
        except queue.Empty:
            if stopping.is_set():
                return None
    batch = [first]
    while len(batch) < limit:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    return batch
