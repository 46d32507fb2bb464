"""gunicorn's workers, with deadlines a slow or silent client cannot stretch.

gunicorn reads a request with blocking reads and no overall deadline, so a
client that sends its headers a byte every few seconds, or nothing at all,
holds a thread (gthread), a pool slot (gevent) or the whole worker (sync) for
as long as it likes. These subclasses change only how requests are read and
how the worker answers on its own:

- reading.py: the head and the body each have a deadline (408 past it), and a
  chunked body over the limit is refused at once (413).
- answers.py: those errors as problems, closed lingeringly (RFC 9112 section
  9.6) so a client still sending reads its answer; the Date header formatted
  once a second, not once per response.
- writing.py: each write of an answer must make progress within a deadline,
  and only so many may wait on clients that read nothing at once.
- balance.py: a worker well over its share of connections lets the others accept.
- peers.py: an IPv4 peer on the dual-stack socket trusted as the IPv4
  address it is, and each peer's trust worked out once.
- per_process.py: what every worker installs of the above once forked.
- gthread_worker.py, gevent_worker.py, sync_worker.py: one worker class each.

gunicorn.conf.py names GthreadWorker, GeventWorker or SyncWorker; `gunicorn -k`
on the command line still picks gunicorn's own worker.
"""

from .gthread_worker import GthreadWorker
from .sync_worker import SyncWorker

# GeventWorker too, on first use: `import *` must not import gevent in a gthread project.
__all__ = ["GthreadWorker", "SyncWorker"]


def __getattr__(name):
    # Only gevent projects have gevent: its worker is imported when gunicorn asks for it.
    if name == "GeventWorker":
        from .gevent_worker import GeventWorker

        return GeventWorker
    raise AttributeError(name)
