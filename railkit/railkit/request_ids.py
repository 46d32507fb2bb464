"""Which incoming request ids are believed: read by the app's request log and the cluster's in-flight record."""

import re

# Railway's edge sets the first (shown as @requestId in its HTTP logs); a client may send the second.
INCOMING_HEADERS = ("X-Railway-Request-Id", "X-Request-ID")
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
