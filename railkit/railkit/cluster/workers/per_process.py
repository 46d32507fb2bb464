"""What every worker process installs for itself once forked, whatever its class."""

from .answers import install_cached_http_date
from .peers import install_peer_trust
from .reading import install_deadline_parser
from .writing import install_write_deadline


def install_request_handling(cooperative: bool = False, stalled_writers: int = 1) -> None:
    """Deadlines on reading requests and writing answers, the Date header cached, each peer's trust worked out once.

    `cooperative`: gevent's, where reading a body yields between reads (reading.py).
    `stalled_writers`: how many answers may wait on clients that read nothing at once (writing.py).
    """
    install_deadline_parser(cooperative)
    install_write_deadline(stalled_writers, cooperative)
    install_cached_http_date()
    install_peer_trust()
