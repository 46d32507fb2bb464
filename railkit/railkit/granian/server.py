"""granian's process manager, serving one shared socket under the platform's supervisor."""

from granian.server.mp import MPServer

from . import compat
from .listener import Listener
from .supervisor import Supervisor


class PlatformServer(MPServer):
    """granian's MPServer: its option checks and its workers, with the platform's socket and supervisor.

    serve() checks the options, then calls _serve, which here hands the master
    over to the supervisor; its exit status is kept in exit_code.
    """

    def __init__(self, listener: Listener, make_supervisor, **options):
        super().__init__(**options)
        self.listener = listener
        # make_supervisor(fork) -> Supervisor, fork(slot) forking one worker.
        self.make_supervisor = make_supervisor
        self.exit_code = 0

    def _init_shared_socket(self):
        compat.share_listener(self, self.listener.sock, self.backlog)

    def _serve(self, spawn_target, target_loader):
        self._init_shared_socket()

        def fork(slot: int):
            return compat.process(compat.start_worker(self, slot, spawn_target, target_loader))

        supervisor: Supervisor = self.make_supervisor(fork)
        self.exit_code = supervisor.run()
