"""gunicorn's sync worker, with request deadlines.

sync serves one connection at a time: the deadlines bound how long one client
holds the worker, nothing more (see the README).

gunicorn internals this relies on (checked at start by gunicorn_compat):
SyncWorker (init_process, handle_request).
"""

from gunicorn.workers.sync import SyncWorker as _SyncWorker

from ..errors import linger
from ..hooks import require_platform_hooks
from .answers import AnswersClientErrors
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
