"""Expiry watch: when a token appears, announce its certificates that expire soon.

The status bar says it, with a button to the certificate; a desktop notification says it
too, with the same button. A token is announced once per insertion.
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime

from PySide6.QtCore import QObject, Signal, Slot

from cert_desk.models import ObjectInfo, ObjectListing, SlotReport, TokenRef
from cert_desk.notify import DesktopNotifier, Notification
from cert_desk.pkcs11.discovery import TRUST_NAMES
from cert_desk.services.outcome import Outcome
from cert_desk.ui.app import AppContext
from cert_desk.x509 import expiry

log = logging.getLogger(__name__)
SEP = "\x1f"


class ExpiryWatch(QObject):
    """Signals:
        found(TokenRef, tuple[ObjectInfo, ...]): Certificates of a token that just appeared expire soon.
        show(TokenRef, int): The user asked to see a certificate (by its handle), from a notification.
    """

    found = Signal(object, object)
    show = Signal(object, int)
    _action = Signal(str, str)

    def __init__(self, ctx: AppContext, notifier_address: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.seen: set[tuple[str, str]] = set()
        self.refs: dict[str, TokenRef] = {}
        self._action.connect(self._on_action)
        self.notifier = DesktopNotifier(self._action.emit, notifier_address)

    @property
    def days(self) -> int:
        return self.ctx.service.settings.expiry_days

    @Slot(str, object)
    def on_tokens(self, module: str, slots: tuple[SlotReport, ...]) -> None:
        if os.path.basename(module) in TRUST_NAMES:
            return  # the system's CA store is not the user's token
        present = {(module, r.token.serial): r for r in slots if r.token is not None and r.token.initialized}
        for key in [k for k in self.seen if k[0] == module and k not in present]:
            self.seen.discard(key)  # gone: announce it again when it comes back
        for key, r in present.items():
            if key in self.seen:
                continue
            self.seen.add(key)
            assert r.token is not None
            ref = TokenRef(module, r.slot.slot_id, r.token.serial, r.token.label)
            self.ctx.jobs.watch(self.ctx.service.list_objects(ref), functools.partial(self._on_listing, ref),
                                f"check the certificates of {ref.label!r}", quiet=True)

    def _on_listing(self, ref: TokenRef, outcome: Outcome[ObjectListing]) -> None:
        if outcome.error is not None or outcome.value is None:
            return
        now = datetime.now(UTC)
        soon = expiry.expiring(outcome.value, now, self.days)
        if not soon:
            return
        self.found.emit(ref, soon)
        first = soon[0]
        lines = [expiry.describe(o, now) for o in soon[:4]]
        tag = SEP.join((ref.module, ref.serial, ref.label, str(ref.slot_id), str(first.handle)))
        self.refs[tag] = ref
        self.notifier.notify(Notification(
            summary=f"{len(soon)} certificate{'s' if len(soon) != 1 else ''} on {ref.label!r} "
                    f"{'expire' if len(soon) != 1 else 'expires'} soon",
            body="\n".join(lines), tag=tag, actions=(("show", "Show certificate"),)))

    @Slot(str, str)
    def _on_action(self, tag: str, key: str) -> None:
        ref = self.refs.get(tag)
        if ref is not None and key in ("show", "default"):
            self.show.emit(ref, int(tag.rsplit(SEP, 1)[1]))

    def close(self) -> None:
        self.notifier.close()


def summary(ref: TokenRef, certs: tuple[ObjectInfo, ...]) -> str:
    now = datetime.now(UTC)
    first = expiry.describe(certs[0], now)
    more = f" (and {len(certs) - 1} more)" if len(certs) > 1 else ""
    return f"On {ref.label!r}: {first}{more}."
