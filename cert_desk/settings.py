"""User settings, as a small JSON file in the config directory (no Qt, so the CLI shares them).

The file is rewritten atomically (a temporary file, then ``rename``) so a crash never
leaves it half written. Unknown keys are kept. Nothing secret is ever stored here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cert_desk.errors import InputError
from cert_desk.paths import config_dir

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """The settings in memory.

    Attributes:
        module_paths: PKCS#11 modules the user added.
        extra: Keys this version does not know (kept as they are).
    """

    module_paths: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or config_dir() / "settings.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path=path)
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable settings file %s: %s", path, e)
            return cls(path=path)
        if not isinstance(raw, dict):
            log.warning("ignoring settings file %s: not a JSON object", path)
            return cls(path=path)
        mods = raw.pop("module_paths", [])
        paths = [p for p in mods if isinstance(p, str)] if isinstance(mods, list) else []
        return cls(module_paths=paths, extra=raw, path=path)

    def save(self) -> None:
        path = self.path or config_dir() / "settings.json"
        data = dict(self.extra)
        data["module_paths"] = self.module_paths
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise InputError(f"Cannot save settings to {path}: {e.strerror or e}") from e

    @property
    def expiry_days(self) -> int:
        """Warn about certificates that expire within this many days (``expiry_warning_days``; 30)."""
        value = self.extra.get("expiry_warning_days", 30)
        return value if isinstance(value, int) and 0 <= value <= 3650 else 30

    def add_module(self, path: str) -> bool:
        """Remember ``path`` (absolute); ``False`` if it was already there."""
        path = os.path.abspath(os.path.expanduser(path))
        if any(os.path.realpath(p) == os.path.realpath(path) for p in self.module_paths):
            return False
        self.module_paths.append(path)
        return True

    def remove_module(self, path: str) -> bool:
        real = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
        before = len(self.module_paths)
        self.module_paths = [p for p in self.module_paths if os.path.realpath(p) != real]
        return len(self.module_paths) != before
