"""SiteSentry's site dashboard: ingests the edge's MQTT messages into a database and serves them to people.

Imports `contract` (pydantic + stdlib) and never `edge`, so it runs on a site server without OpenCV or
ONNX Runtime (a test checks it).
"""
