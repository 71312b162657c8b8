"""One router per resource; every route but /api/health needs a login (a test walks app.routes)."""
