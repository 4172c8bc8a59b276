"""Icons and colours that follow the system's light or dark palette.

Icons are monochrome SVGs (``cert_desk/ui/icons``) drawn in the palette's text colour, so
they stay readable in both schemes; state colours (ok, warning, error) have a light and a
dark variant. Widgets that show an icon register with :func:`themed`, and
:func:`retheme` repaints them all when the palette changes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

ICON_DIR = Path(__file__).resolve().parent / "icons"
_cache: dict[tuple[str, str], QIcon] = {}
_themed: list[tuple[weakref.ref[object], str, Callable[[object, QIcon], None]]] = []


def is_dark() -> bool:
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def text_colour() -> QColor:
    return QGuiApplication.palette().color(QPalette.ColorRole.WindowText)


def icon(name: str, colour: QColor | None = None) -> QIcon:
    """The named icon in ``colour`` (default: the palette's text colour)."""
    c = (colour or text_colour()).name()
    key = (name, c)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    path = ICON_DIR / f"{name}.svg"
    result = QIcon()
    if path.exists():
        svg = path.read_text(encoding="utf-8").replace("#000000", c)
        renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
        for size in (16, 20, 22, 24, 32, 48):
            for ratio in (1.0, 2.0):
                pixmap = QPixmap(int(size * ratio), int(size * ratio))
                pixmap.fill(Qt.GlobalColor.transparent)
                pixmap.setDevicePixelRatio(ratio)
                painter = QPainter(pixmap)
                renderer.render(painter, QRectF(0, 0, size, size))
                painter.end()
                result.addPixmap(pixmap)
    _cache[key] = result
    return result


def app_icon() -> QIcon:
    path = ICON_DIR / "cert-desk.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


def themed(widget: object, name: str, setter: Callable[[object, QIcon], None] | None = None) -> None:
    """Give ``widget`` the named icon now and after every palette change."""
    set_icon = setter or (lambda w, i: w.setIcon(i))  # type: ignore[attr-defined]
    set_icon(widget, icon(name))
    _themed.append((weakref.ref(widget), name, set_icon))


def retheme() -> None:
    _cache.clear()
    alive = []
    for ref, name, set_icon in _themed:
        w = ref()
        if w is None:
            continue
        try:
            set_icon(w, icon(name))
        except RuntimeError:  # the C++ object is gone
            continue
        alive.append((ref, name, set_icon))
    _themed[:] = alive


ICON_SIZE = QSize(20, 20)

# (light palette, dark palette)
_STATE = {
    "ok": ("#1b7f3b", "#6fd08c"),
    "warn": ("#a15c00", "#f0b45a"),
    "error": ("#c0392b", "#ff7b6e"),
    "muted": ("#6b6b6b", "#9a9a9a"),
}


def state_colour(kind: str) -> QColor:
    light, dark = _STATE[kind]
    return QColor(dark if is_dark() else light)


def state_hex(kind: str) -> str:
    return state_colour(kind).name()


SPACING = 8
MARGIN = 10
