"""Fixed-window counts in one worker's memory, for a limit without Redis (or while Redis is down), in bounded space.

Each key is a client and route's window. The store holds at most `max_keys` of
them, in the order they were last counted: a spray of new client addresses
pushes out the clients quiet for longest (they start a fresh window), never a
client that keeps sending, whose key is always at the recent end. Each count
costs O(1): it drops at most a few ended windows from the old end, and the
oldest live one when full. Every read and count runs under one lock.
"""

import threading
import time
from collections import OrderedDict

# Keys one worker remembers: about 300 bytes each, so some 15 MB when full.
MEMORY_KEYS_MAX = 50_000
# Ended windows dropped from the old end per count: more than the one key a count can add.
SWEEP_PER_COUNT = 2


class WorkerMemoryStorage:
    """Fixed-window counts in this worker's memory, the least recently counted dropped first when full."""

    def __init__(self, max_keys: int = MEMORY_KEYS_MAX):
        self.max_keys = max_keys
        self.lock = threading.Lock()
        # key -> [count, when its window ends (epoch seconds)], least recently counted first
        self.windows: OrderedDict[str, list] = OrderedDict()

    def __len__(self) -> int:
        return len(self.windows)

    def hit(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """Add `amount` to the key's count in its window (a new one once the last ended): (count, when it ends)."""
        now = time.time()
        windows = self.windows
        with self.lock:
            window = windows.get(key)
            if window is None or window[1] <= now:
                window = windows[key] = [0, now + expiry]
            windows.move_to_end(key)
            window[0] += amount
            self._drop_old(now)
            return window[0], window[1]

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.hit(key, expiry, amount)[0]

    def get(self, key: str) -> int:
        with self.lock:
            window = self.windows.get(key)
            return window[0] if window and window[1] > time.time() else 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now, if it has no live window)."""
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            return window[1] if window and window[1] > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self.lock:
            cleared = len(self.windows)
            self.windows.clear()
            return cleared

    def clear(self, key: str) -> None:
        with self.lock:
            self.windows.pop(key, None)

    def _drop_old(self, now: float) -> None:
        # Under the lock. The key just counted is at the recent end, so it is never dropped here.
        windows = self.windows
        for _ in range(SWEEP_PER_COUNT):
            oldest = next(iter(windows.values()), None)
            if oldest is None or oldest[1] > now:
                break
            windows.popitem(last=False)
        while len(windows) > self.max_keys:
            windows.popitem(last=False)
