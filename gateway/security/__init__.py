"""The security layer: exposures, the policy engine, TLS, certificates, audit log, secrets at rest.

Only this package builds ``ssl.SSLContext`` objects and certificates; plugins ask it for them.
"""
