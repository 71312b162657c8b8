"""One router per page area; each route parses input, calls one query or service, and renders a template."""
