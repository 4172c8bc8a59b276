"""The window on a real Qt event loop (offscreen), over the real services and a real SoftHSM2 token."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from cert_desk.models import TokenSelector
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.services.outcome import Outcome
from cert_desk.services.tokens import TokenService
from cert_desk.ui.app import AppContext, make_context
from cert_desk.ui.main_window import MainWindow
from tests.conftest import SoftHsm


@pytest.fixture
def ctx(service: TokenService) -> Iterator[AppContext]:
    context = make_context(service)
    yield context
    context.jobs.close()
    context.tasks.shutdown()


def test_outcomes_arrive_on_the_gui_thread(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm, token: str) -> None:
    got: list[tuple[str, Outcome[object]]] = []

    def job(m: LoadedModule) -> str:
        return threading.current_thread().name

    ctx.jobs.watch(ctx.service.run(softhsm.module, job, "probe"),
                   lambda o: got.append((threading.current_thread().name, o)), "probe")
    ctx.jobs.watch(ctx.service.run(softhsm.module, lambda m: m.resolve(TokenSelector(label="nope")), "fail"),
                   lambda o: got.append((threading.current_thread().name, o)), "fail")
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10000)
    main = threading.main_thread().name
    assert [name for name, _ in got] == [main, main]
    assert got[0][1].value == "pkcs11:libsofthsm2.so"
    assert got[1][1].error is not None and "No initialised token" in got[1][1].error.message
    assert ctx.jobs.pending() == 0 and ctx.jobs.busy_text() == ""


def test_window_opens_on_the_demo_token(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm) -> None:
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.devices.open_demo()
    qtbot.waitUntil(lambda: window.objects.model.rowCount() == 5, timeout=30000)
    assert window.stack.currentWidget() is window.objects
    labels = {window.objects.model.object_at(r).label for r in range(5)}  # type: ignore[union-attr]
    assert labels == {"demo-rsa", "demo-ec", "cert-desk Demo CA"}
    assert "private keys appear after you log in" in window.objects.note.text()
    window.objects.filter.setText("demo-ec")
    assert window.objects.proxy.rowCount() == 2
    window.objects.table.selectRow(0)
    assert "pkcs11:" in window.objects.details.toPlainText()
    qtbot.waitUntil(lambda: ctx.jobs.pending() == 0, timeout=10000)
    assert window.busy_label.text() == "Ready"


def _token_rows(window: MainWindow) -> list[str]:
    model = window.devices.model
    out = []
    for r in range(model.rowCount()):
        module = model.item(r)
        for c in range(module.rowCount()):
            out.append(module.child(c).text())
    return out


def test_refresh_reloads_modules_to_see_new_tokens(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm) -> None:
    softhsm.init_token("first")
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: any(t.startswith("first") for t in _token_rows(window)), timeout=20000)
    softhsm.init_token("second")  # made by another program: SoftHSM2 sees it only after re-initialising
    window.devices.refresh_button.click()
    qtbot.waitUntil(lambda: any(t.startswith("second") for t in _token_rows(window)), timeout=20000)
    assert window.devices.refresh_button.isEnabled()
    assert any(t.startswith("first") for t in _token_rows(window))
