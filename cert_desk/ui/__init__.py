"""The desktop window (PySide6). Talks to tokens only through :mod:`cert_desk.services`."""
