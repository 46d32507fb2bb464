"""One start-up line, from the master, saying how far the rate limit's count reaches."""

import logging
import math

from limits import parse_many

from .. import project
from ..settings import Settings

log = logging.getLogger(__name__)

# Whether this project was generated with Railway's Redis for shared limits.
PROJECT_HAS_REDIS = project.HAS_REDIS


def log_rate_limit_scope(settings: Settings, workers: int) -> None:
    """Say how the limit is held when no Redis shares it; the master says it once, not each worker."""
    if settings.rate_limit is None or settings.redis_url:
        return
    share = f"each of {workers} workers holds 1/{workers} of it" if workers > 1 else "one worker holds it"
    if workers > 1:
        # Each worker holds ceil(L / W): a client gets that many to W times as many, by where its connections land.
        first = parse_many(settings.rate_limit)[0]
        each = math.ceil(first.amount / workers)
        share += f": a client gets {each} to {each * workers} requests through where the limit says {first.amount}"
    if PROJECT_HAS_REDIS:
        log.warning(
            "Rate limit %s is counted in this replica only (%s): set REDIS_URL to share one count across replicas",
            settings.rate_limit,
            share,
        )
    else:
        log.info("Rate limit %s per client and replica (%s)", settings.rate_limit, share)
