"""gunicorn's sync worker, with request deadlines.

sync serves one connection at a time: the deadlines bound how long one client
holds the worker, nothing more (see the README). A worker told to stop lets go
of the listening sockets at once, even in the middle of a request, so new
clients are refused instead of waiting for it (listeners.py).

gunicorn internals this relies on (checked at start by gunicorn_compat):
SyncWorker (init_process, handle_request, accept), Worker.handle_exit (the
SIGTERM handler, clearing `alive`).
"""

import errno

from gunicorn.workers.sync import SyncWorker as _SyncWorker

from ..errors import linger
from ..hooks import require_platform_hooks
from .answers import AnswersClientErrors
from .listeners import let_go_of_listeners
from .per_process import install_request_handling
from .reading import body_left


class SyncWorker(AnswersClientErrors, _SyncWorker):
    """sync, with request deadlines: one slow client holds the worker for a bounded time only."""

    @classmethod
    def check_config(cls, cfg, log):
        """gunicorn's own check, if the class has one; then refuse a start without the platform's hooks."""
        parent = getattr(super(), "check_config", None)
        if parent is not None:
            parent(cfg, log)
        require_platform_hooks(cfg)

    def init_process(self):
        install_request_handling()
        super().init_process()

    def handle_request(self, listener, req, client, addr):
        super().handle_request(listener, req, client, addr)
        if body_left(req):
            linger(client)

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        let_go_of_listeners(self.sockets)

    def accept(self, listener):
        try:
            super().accept(listener)
        except OSError as error:
            if self.alive:
                raise
            # The listener is /dev/null now (handle_exit): nothing to accept, and the loop ends.
            raise BlockingIOError(errno.EAGAIN, "stopping") from error
