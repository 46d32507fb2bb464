"""Death causes and the crash guard's back-off, with a clock the test controls."""

from my_service.cluster.lifecycle import (
    MAX_UNSTABLE,
    STREAK_RESET,
    CrashGuard,
    Death,
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_causes_name_what_happened():
    assert "OOM" in Death("SIGKILL", 5.0).cause
    assert "memory limit" in Death("SIGTERM", 5.0, over_memory=True).cause
    assert "timed out" in Death("SIGABRT", 5.0, timed_out=True).cause
    assert Death("exit code 13", 5.0).cause == "crashed (exit code 13)"
    assert "forced" in Death("SIGKILL", 5.0, shutting_down=True).cause
    assert "max_requests" in Death("exit code 0", 5.0).cause


def test_quick_deaths_back_off_exponentially_then_give_up():
    clock = Clock()
    guard = CrashGuard(clock)
    delays = []
    for _ in range(MAX_UNSTABLE):
        assert not guard.exhausted
        guard.record(Death("exit code 1", 0.1))
        delays.append(guard.delay())
        clock.now += 0.5
    assert guard.exhausted
    assert delays == sorted(delays) and delays[0] < delays[-1]


def test_stable_and_intended_deaths_do_not_count():
    guard = CrashGuard(Clock())
    guard.record(Death("exit code 1", 60.0))
    guard.record(Death("exit code 0", 0.1))
    guard.record(Death("SIGTERM", 0.1, over_memory=True))
    assert guard.streak == 0
    assert guard.delay() == 0


def test_the_streak_resets_after_a_quiet_spell():
    clock = Clock()
    guard = CrashGuard(clock)
    for _ in range(MAX_UNSTABLE - 1):
        guard.record(Death("exit code 1", 0.1))
    clock.now += STREAK_RESET + 1
    assert guard.delay() == 0
    guard.record(Death("exit code 1", 0.1))
    assert guard.streak == 1
