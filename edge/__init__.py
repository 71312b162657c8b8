"""SiteSentry edge runtime: camera frames to PPE and danger-zone violations, evidence and alerts."""

__version__ = "0.1.0"
