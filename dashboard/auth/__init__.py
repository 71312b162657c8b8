"""Authentication and authorisation: passwords, sessions, CSRF, throttling, API tokens, roles and scope.

Routes use the `Annotated` dependencies of `dashboard.auth.deps` and nothing else; the functions of
`dashboard.auth.service` are what a login page or the CLI calls.
"""
