"""Start the desktop application."""

from __future__ import annotations

import gc
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox

from cert_desk import APP_ID, APP_NAME, __version__
from cert_desk.paths import log_file
from cert_desk.services.lifecycle import LifecycleService
from cert_desk.services.qt import QtJobs
from cert_desk.services.tasks import TaskRunner
from cert_desk.services.tokens import TokenService
from cert_desk.ui import style

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What every pane shares: the token services, the background task runner and the Qt adapter."""

    service: TokenService
    tasks: TaskRunner
    jobs: QtJobs
    lifecycle: LifecycleService = field(init=False)

    def __post_init__(self) -> None:
        self.lifecycle = LifecycleService(self.service)

    def shutdown(self, timeout: float = 3.0) -> bool:
        self.jobs.close()
        self.tasks.shutdown()
        return self.service.shutdown(timeout)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    log.critical("unhandled exception", exc_info=(kind, value, tb))
    text = "".join(traceback.format_exception_only(kind, value)).strip()
    app = QApplication.instance()
    if app is not None:
        QMessageBox.critical(
            None, f"{APP_NAME}: internal error",
            f"Something went wrong inside {APP_NAME}; this is a bug.\n\n{text}\n\n"
            f"The details are in {log_file()}.",
        )


def dark_palette() -> QPalette:
    """Fusion's colours for a dark scheme (used when the platform has no dark theme of its own)."""
    p = QPalette()
    window, base, text, dim = QColor("#2b2d30"), QColor("#1e1f22"), QColor("#e6e6e6"), QColor("#8c8c8c")
    for role, colour in (
        (QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, QColor("#26282b")),
        (QPalette.ColorRole.ToolTipBase, window), (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, QColor("#35373b")),
        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.BrightText, QColor("#ff6b6b")),
        (QPalette.ColorRole.Highlight, QColor("#2f65ca")), (QPalette.ColorRole.HighlightedText, QColor("#ffffff")),
        (QPalette.ColorRole.Link, QColor("#7aa7ff")), (QPalette.ColorRole.PlaceholderText, dim),
        (QPalette.ColorRole.Mid, QColor("#3c3f41")), (QPalette.ColorRole.Dark, QColor("#18191b")),
    ):
        p.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, dim)
    return p


def apply_color_scheme(app: QApplication) -> None:
    """Follow the system's light or dark scheme (Qt does); ``CERT_DESK_COLOR_SCHEME=dark|light`` forces one."""
    wanted = os.environ.get("CERT_DESK_COLOR_SCHEME", "").lower()
    scheme = {"dark": Qt.ColorScheme.Dark, "light": Qt.ColorScheme.Light}.get(wanted)
    if scheme is None:
        return
    app.setStyle("Fusion")
    app.styleHints().setColorScheme(scheme)
    # A platform without a theme of its own (plain X11, offscreen) ignores the scheme: say it.
    if scheme == Qt.ColorScheme.Dark and not style.is_dark():
        app.setPalette(dark_palette())


def make_context(service: TokenService | None = None) -> AppContext:
    return AppContext(service or TokenService(), TaskRunner(), QtJobs())


def _watch_smoke_test(app: QApplication, window: Any, demo: bool) -> None:
    import time

    started = time.monotonic()
    timer = QTimer(app)

    def check() -> None:
        rows = window.devices.token_rows()
        up = window.isVisible() and window.ctx.jobs.pending() == 0 and bool(rows)
        if up and (not demo or any(r.startswith(demo_label()) for r in rows)):
            print(f"smoke test: the window is up; Devices lists {len(rows)} slot(s)", flush=True)
            timer.stop()
            app.exit(0)
        elif time.monotonic() - started > 60:
            print("smoke test: the window did not come up within 60 s", file=sys.stderr, flush=True)
            timer.stop()
            app.exit(1)

    timer.timeout.connect(check)
    timer.start(200)


def demo_label() -> str:
    from cert_desk import demo

    return demo.DEMO_LABEL


def main(demo: bool = False, smoke_test: bool = False) -> int:
    """Run the window until it closes; returns the exit code.

    ``smoke_test``: quit with 0 once the window is shown and the Devices pane has listed the modules
    (and, with ``demo``, the demo token), or with 1 after 60 s: how packaging checks a bundle starts.
    """
    from cert_desk.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)
    apply_color_scheme(app)
    app.setWindowIcon(style.app_icon())
    sys.excepthook = _excepthook
    ctx = make_context()
    window = MainWindow(ctx)
    window.show()
    # What exists now lives as long as the window: keep it out of every later collection, so a
    # full collection during a big listing stays short.
    gc.freeze()
    if demo:
        QTimer.singleShot(0, window.devices.open_demo)
    if smoke_test:
        _watch_smoke_test(app, window, demo)
    rc = app.exec()
    if not ctx.shutdown():
        log.warning("a token module did not finish in time; exiting anyway")
    return int(rc)
