"""Where cert-desk keeps its files (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/cert-desk``: settings."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "cert-desk"


def data_dir() -> Path:
    """``$XDG_DATA_HOME/cert-desk``: the demo token."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "cert-desk"


def state_dir() -> Path:
    """``$XDG_STATE_HOME/cert-desk``: the log file."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "cert-desk"


def log_file() -> Path:
    return state_dir() / "cert-desk.log"


FLATPAK_INFO = "/.flatpak-info"


def in_flatpak() -> bool:
    """cert-desk runs inside a Flatpak sandbox: /app is not the host's, its PIDs are its own, and
    pcscd is the host's, reached through the forwarded socket."""
    return os.path.exists(FLATPAK_INFO)
