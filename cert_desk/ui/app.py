"""Start the desktop application."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from dataclasses import dataclass
from types import TracebackType

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from cert_desk import APP_ID, APP_NAME, __version__
from cert_desk.paths import log_file
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


def apply_color_scheme(app: QApplication) -> None:
    """Follow the system's light or dark scheme (Qt does); ``CERT_DESK_COLOR_SCHEME=dark|light`` forces one."""
    wanted = os.environ.get("CERT_DESK_COLOR_SCHEME", "").lower()
    scheme = {"dark": Qt.ColorScheme.Dark, "light": Qt.ColorScheme.Light}.get(wanted)
    if scheme is not None:
        app.setStyle("Fusion")  # the style that follows the colour scheme on every platform
        app.styleHints().setColorScheme(scheme)


def make_context(service: TokenService | None = None) -> AppContext:
    return AppContext(service or TokenService(), TaskRunner(), QtJobs())


def main(demo: bool = False) -> int:
    """Run the window until it closes; returns the exit code."""
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
    if demo:
        QTimer.singleShot(0, window.devices.open_demo)
    rc = app.exec()
    if not ctx.shutdown():
        log.warning("a token module did not finish in time; exiting anyway")
    return int(rc)
