"""The project's app plus routes that misbehave on purpose, for the cluster tests."""

import os
import signal
import threading
import time

from flask import request

from .fixture_app import create_app

app = create_app()
_hoard = []


@app.get("/slow")
def slow():
    app.logger.info("slow request started")
    time.sleep(float(request.args.get("seconds", 1)))
    return {"slept": True, "pid": os.getpid()}


@app.get("/stream")
def stream():
    """A streamed answer: each chunk is quick for the app, the whole takes long."""

    chunks, pause = int(request.args.get("chunks", 5)), float(request.args.get("pause", 0.5))

    def ticks():
        for _ in range(chunks):
            time.sleep(pause)
            yield b"tick\n"

    return app.response_class(ticks(), mimetype="text/plain")


@app.get("/signal-this-thread")
def signal_this_thread():
    """A signal (SIGTERM unless `name` says) to the request's own thread: as if the kernel had chosen that thread."""
    signal.pthread_kill(threading.get_ident(), signal.Signals[request.args.get("name", "SIGTERM")])
    return {"pid": os.getpid()}


@app.get("/fork-and-sigterm")
def fork_and_sigterm():
    """A child the app forks sends itself SIGTERM: how it ended (its parent's signal plumbing is not its own)."""
    child = os.fork()
    if child == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    return {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}


@app.get("/pid")
def pid():
    return {"pid": os.getpid()}


@app.get("/leak")
def leak():
    """Keep `mb` more megabytes alive in this worker, touched so they count as USS."""
    _hoard.append(bytearray(os.urandom(1)) * (int(request.args.get("mb", 10)) * 2**20))
    if request.args.get("hang"):
        threading.Event().wait()
    return {"pid": os.getpid(), "held_mb": sum(len(chunk) for chunk in _hoard) // 2**20}


@app.get("/exit")
def hard_exit():
    os._exit(13)


@app.get("/hang")
def hang():
    threading.Event().wait()


@app.get("/thread-crash")
def thread_crash():
    worker = threading.Thread(target=lambda: 1 / 0, name="doomed-thread")
    worker.start()
    worker.join()
    return {"thread": "crashed"}


@app.get("/boom")
def boom():
    raise RuntimeError("secret internal detail")
