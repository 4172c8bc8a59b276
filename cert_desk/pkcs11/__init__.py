"""The PKCS#11 core: module discovery, loading, tokens, objects, URIs (no Qt).

Everything that touches python-pkcs11 lives in this package and runs on a module's
worker thread (see :mod:`cert_desk.services.worker`).
"""
