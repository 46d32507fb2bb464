"""Sharing the master's memory with the workers never costs a worker its data.

The app (no_data_loss_app.py) makes, at import in the master, a buffered
file, objects with finalizers to come, and a buffer a worker will fill. A
worker writes to the file without flushing, drops an object and the
buffer; after a graceful stop the line is on disk, every finalizer ran and
the memory was given back while the worker was still serving.
"""

import io
import signal

import psutil
import pytest

from railkit.cluster import preload

pytestmark = pytest.mark.cluster

APP = "railkit_tests.no_data_loss_app:app"
# What the route fills (no_data_loss_app.BALLAST_MB), and what may stay of it once dropped.
BALLAST_MB = 200
LEFT_OVER_MB = 50


def _resident_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def test_a_worker_keeps_its_writes_finalizers_and_freed_memory(serve, tmp_path):
    # One worker: every request reaches the worker whose memory is measured. No memory limit: 200 MB is the point.
    env = {"NO_DATA_LOSS_DIR": str(tmp_path), "WEB_CONCURRENCY": "1", "WORKER_MAX_MEMORY_MB": "4096"}
    server = serve(env, app=APP)
    [worker] = server.wait_for_workers(1)
    lost = []

    assert server.request("/write-line")[0] == 200
    assert server.request("/finalizers")[0] == 200
    if not (tmp_path / "finalized-when-dropped").exists():
        lost.append("a finalizer did not run when its object was dropped")

    before = _resident_mb(worker)
    assert server.request("/fill-ballast")[0] == 200
    filled = _resident_mb(worker)
    assert filled >= before + BALLAST_MB * 0.9, (before, filled)
    assert server.request("/drop-ballast")[0] == 200
    dropped = _resident_mb(worker)
    if dropped > before + LEFT_OVER_MB:
        lost.append(f"dropped memory was kept: RSS {before:.0f} MB, {filled:.0f} filled, {dropped:.0f} dropped")

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    written = (tmp_path / "lines.txt").read_text()
    master = server.process.pid
    if written != f"imported in {master}\nwritten by worker {worker}\nexit of {worker}\nexit of {master}\n":
        lost.append(f"not each unflushed line once (import's, worker's, its exit's, the master's exit's): {written!r}")
    if not (tmp_path / "finalized-at-exit").exists():
        lost.append("a finalizer did not run at the worker's exit")
    assert not lost


def test_a_file_whose_flush_is_interrupted_leaves_the_others_flushed(tmp_path):
    """An interruption raised by one file's flush() at exit is raised again, once every other file is flushed."""

    class Interrupted(io.RawIOBase):
        armed = True

        def writable(self):
            return True

        def flush(self):
            if self.armed:
                raise KeyboardInterrupt

    interrupted = Interrupted()
    preload._files_at_freeze.add(interrupted)  # flushed first: open when the app was frozen
    try:
        with open(tmp_path / "buffered", "w") as buffered:
            buffered.write("a line\n")
            with pytest.raises(KeyboardInterrupt):
                preload.flush_open_files()
            assert (tmp_path / "buffered").read_text() == "a line\n"
    finally:
        interrupted.armed = False
        preload._files_at_freeze.discard(interrupted)
