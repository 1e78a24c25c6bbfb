"""Where a function ran: a spy that calls the real one and notes the thread it ran on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ThreadSpy:
    def __init__(self, real: Callable[..., Any]) -> None:
        self.real, self.threads = real, list[int]()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        return self.real(*args, **kwargs)

    def ran_off(self, loop_thread: int) -> bool:
        """Called at least once, never on `loop_thread` (the event loop's)."""
        return bool(self.threads) and loop_thread not in self.threads
