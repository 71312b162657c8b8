"""SiteSentry's site dashboard: ingests the edge's MQTT messages into a database and serves them to people.

Imports `contract` (pydantic + stdlib) and never `edge`, so it runs on a site server without OpenCV or
ONNX Runtime (a test checks it).
"""

import sys

# Extras cannot declare their own requires-python: say it here rather than fail later on datetime.UTC & co.
if sys.version_info < (3, 11):  # noqa: UP036 (the package itself installs on 3.10, for the edge runtime)
    raise ImportError(
        "the SiteSentry dashboard needs Python 3.11 or newer (the edge runtime alone runs on 3.10)",
        name="dashboard",
    )
