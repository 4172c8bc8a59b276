"""cert-desk: manage PKCS#11 tokens and use them as a browser keystore.

The package is split into a Qt-free core (``pkcs11``, ``x509``, ``nss``, ``pcsc``,
``secrets``, :mod:`cert_desk.errors`, :mod:`cert_desk.models`), a service layer that
runs every PKCS#11 call on one worker thread per module (:mod:`cert_desk.services`),
the desktop UI (:mod:`cert_desk.ui`) and the command line (:mod:`cert_desk.cli`).
"""

__version__ = "0.1.0"
APP_ID = "io.github.cert_desk.CertDesk"
APP_NAME = "cert-desk"
