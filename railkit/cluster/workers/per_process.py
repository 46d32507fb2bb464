"""What every worker process installs for itself once forked, whatever its class."""

from .answers import install_cached_http_date
from .peers import install_peer_trust
from .reading import install_deadline_parser


def install_request_handling(cooperative: bool = False) -> None:
    """Deadlines on reading requests, the Date header cached, each peer's trust worked out once.

    `cooperative`: gevent's, where reading a body yields between reads (reading.py).
    """
    install_deadline_parser(cooperative)
    install_cached_http_date()
    install_peer_trust()
