"""The ``cert-desk`` command line.

With no command it opens the desktop window; with a command it talks to tokens through
the same services the window uses, and never imports Qt.

Exit codes: 0 success, 1 the operation failed (the message is on stderr; with ``--json``
also a JSON error object on stdout), 2 bad usage.

PINs: ``--pin-file FILE`` (``-`` for standard input), the ``CERT_DESK_PIN`` /
``CERT_DESK_SO_PIN`` environment variables, or a prompt on the terminal. There is no
option that takes a PIN value: the command line of every process is readable by every
user of the machine.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

from cert_desk import APP_NAME, __version__, jsonout
from cert_desk import errors as E
from cert_desk.models import (
    LibraryInfo,
    ObjectInfo,
    ObjectListing,
    SlotReport,
    TokenInfo,
    TokenRef,
    TokenSelector,
)
from cert_desk.pkcs11 import constants as C
from cert_desk.secrets import PIN_ENV, SO_PIN_ENV, Secret, read_pin_file
from cert_desk.secrets.sources import pin_from_env

log = logging.getLogger(__name__)

T = TypeVar("T")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MODULE_TIMEOUT = 60.0
PCSC_TIMEOUT = 5.0  # a hung pcscd blocks every client without an error


# ------------------------------------------------------------------ helpers


def _wait(future: Future[T], what: str, timeout: float | None = None) -> T:
    try:
        return future.result(timeout)
    except FutureTimeout as e:
        raise E.TokenBusyError(f"The module did not answer within {timeout:.0f} s while trying to {what}.",
                               operation=what) from e


def _slot_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a slot ID (a decimal or 0x hex number)") from e
    if value < 0:
        raise argparse.ArgumentTypeError("a slot ID is not negative")
    return value


def _yesno(value: bool | None) -> str:
    return "yes" if value else "no"


class Context:
    """What one CLI run shares: the parsed arguments, the output streams and the services."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._lines: list[str] = []
        self._service: Any = None

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def service(self) -> Any:
        if self._service is None:
            from cert_desk.services.tokens import TokenService

            module = getattr(self.args, "module", None)
            self._service = TokenService(extra_modules=[module] if module else [])
        return self._service

    def close(self) -> None:
        self.flush()
        if self._service is not None:
            self._service.shutdown(timeout=10.0)

    def say(self, text: str = "") -> None:
        """Queue a line for stdout (written by :meth:`flush`: one write even when Python is unbuffered)."""
        self._lines.append(text)

    def flush(self) -> None:
        if self._lines:
            self.out.write("\n".join(self._lines) + "\n")
            self._lines.clear()
        self.out.flush()

    def note(self, text: str) -> None:
        self.flush()
        print(text, file=self.err)

    def emit_json(self, value: Any) -> None:
        # One write: pretty on a terminal, compact for scripts (and 3x faster to produce).
        pretty = self.out.isatty()
        self.out.write(json.dumps(value, indent=2 if pretty else None, ensure_ascii=False) + "\n")
        self.out.flush()

    def modules_to_search(self) -> list[str] | None:
        """``--module`` (or the demo's SoftHSM2); ``None`` means every discovered module."""
        module = getattr(self.args, "module", None)
        if module:
            return [module]
        if getattr(self.args, "demo", False):
            from cert_desk import demo

            return [demo.module_path()]
        return None

    def selector(self) -> TokenSelector:
        label = getattr(self.args, "token", None)
        serial = getattr(self.args, "serial", None)
        slot = getattr(self.args, "slot", None)
        if label == "":
            raise E.InputError("--token needs a label; the empty label names no initialised token.")
        if label is None and serial is None and slot is None and getattr(self.args, "demo", False):
            from cert_desk.demo import DEMO_LABEL

            label = DEMO_LABEL
        return TokenSelector(label=label, serial=serial, slot_id=slot)

    def find_token(self) -> TokenRef:
        return self.service.find_token(self.selector(), self.modules_to_search())  # type: ignore[no-any-return]


# -------------------------------------------------------------------- PINs


def obtain_pin(ctx: Context, info: TokenInfo, *, so: bool = False) -> Secret | None:
    """Show the PIN state, then get the PIN from --pin-file, the environment or the terminal.

    ``None`` means the token has a PIN pad and the user types the PIN there.
    """
    who = "SO PIN" if so else "PIN"
    state = info.so_pin if so else info.user_pin
    if state is not E.PinState.OK:
        ctx.note(f"{who} state of {info.label!r}: {state.words}.")
    if state is E.PinState.LOCKED:
        raise E.PinLockedError(f"The {who} of {info.label!r} is locked; no login was tried.", so=so)
    if state is E.PinState.TO_BE_CHANGED:
        ctx.note(f"The token wants this {who} changed: cert-desk pin {'change-so' if so else 'change'}.")
    if state is E.PinState.NOT_INITIALIZED and not so:
        raise E.PinError(f"{info.label!r} has no user PIN yet, so there is nothing to log in with.",
                         hint="Set the user PIN with the SO PIN first: cert-desk pin unblock.")
    if info.protected_authentication_path:
        ctx.note(f"Enter the {who} of {info.label!r} on the reader's PIN pad.")
        return None
    pin_file = getattr(ctx.args, "pin_file", None)
    if pin_file and not so:
        return read_pin_file(pin_file)
    env = pin_from_env(SO_PIN_ENV if so else PIN_ENV)
    if env is not None:
        return env
    if not so:
        kept = _remembered_pin(ctx, info)
        if kept is not None:
            return kept
    if sys.stdin.isatty():
        limits = ""
        if info.min_pin_len is not None or info.max_pin_len is not None:
            limits = f" ({info.min_pin_len or 0}-{info.max_pin_len or '...'} characters)"
        ctx.flush()
        value = getpass.getpass(f"{who} for token {info.label!r}{limits}: ")
        if not value:
            raise E.CancelledError("No PIN entered; nothing was tried.")
        return Secret(value, "prompt")
    raise E.PinRequiredError(f"Logging in to {info.label!r} needs its {who}.")


def _remembered_pin(ctx: Context, info: TokenInfo) -> Secret | None:
    """The PIN remembered in the keyring for this token, when its PIN state lets it be tried."""
    from cert_desk.secrets import remembered

    if os.environ.get("CERT_DESK_NO_KEYRING") or not info.serial.strip():
        return None
    try:
        pin = remembered.recall(info.serial, info.label)
    except E.KeyringError as err:  # only asked for a token whose PIN the user chose to remember
        ctx.note(f"Not using the remembered PIN: {err.message}")
        return None
    if pin is None:
        return None
    if not remembered.usable_for(info.user_pin):
        ctx.note(f"A PIN is remembered for {info.label!r}, but the token says: {info.user_pin.words}; "
                 "it is not tried.")
        return None
    ctx.note(f"Using the PIN remembered in the keyring for {info.label!r}.")
    return pin


def confirm_final_try(ctx: Context, info: TokenInfo, *, so: bool = False) -> bool:
    """On FINAL_TRY: True when --allow-final-try was given or the user typed 'yes'."""
    state = info.so_pin if so else info.user_pin
    if state is not E.PinState.FINAL_TRY:
        return False
    if getattr(ctx.args, "allow_final_try", False):
        return True
    if sys.stdin.isatty():
        ctx.note("One more wrong PIN locks the token.")
        ctx.flush()
        answer = input("Type 'yes' to try the PIN anyway: ")
        return answer.strip().lower() == "yes"
    return False


def login(ctx: Context, ref: TokenRef, *, so: bool = False) -> None:
    info: TokenInfo = _wait(ctx.service.token_info(ref), "read the token information", MODULE_TIMEOUT)
    pin = obtain_pin(ctx, info, so=so)
    allow = confirm_final_try(ctx, info, so=so)
    try:
        _wait(ctx.service.login(ref, pin, so=so, allow_final_try=allow), "log in")
    except E.PinError as err:
        from cert_desk.secrets import remembered

        if (pin is not None and pin.source == remembered.SOURCE
                and remembered.on_login_result(info.serial, info.label, pin, err)):
            err.hint = ("The remembered PIN was wrong, so it has been deleted from the keyring; it will not be "
                        "tried again. Give the PIN with --pin-file, CERT_DESK_PIN or at the prompt.")
        raise


# --------------------------------------------------------------- commands


def cmd_modules(ctx: Context) -> int:
    from cert_desk.settings import Settings

    args = ctx.args
    if args.add or args.remove:
        settings = Settings.load()
        if args.add:
            path = os.path.abspath(os.path.expanduser(args.add))
            if not os.path.isfile(path):
                raise E.ModuleNotFoundError_(f"{path} does not exist (or is not a file).", path)
            # Prove it loads before remembering it.
            _wait(ctx.service.library_info(path), "load the module", MODULE_TIMEOUT)
            changed = settings.add_module(path)
            ctx.note(f"Added {path}." if changed else f"{path} was already in the list.")
        if args.remove:
            changed = settings.remove_module(args.remove)
            ctx.note(f"Removed {args.remove}." if changed else f"{args.remove} was not in your list.")
        settings.save()
        ctx.service.settings = settings
    entries = ctx.service.modules()
    futures = {e.realpath: ctx.service.library_info(e.realpath) for e in entries if e.exists}
    rows: list[tuple[Any, LibraryInfo | None, str | None]] = []
    for e in entries:
        info: LibraryInfo | None = None
        error: str | None = None
        if not e.exists:
            error = "the file does not exist"
        else:
            try:
                info = _wait(futures[e.realpath], "load the module", MODULE_TIMEOUT)
            except E.CertDeskError as err:
                error = err.message
        rows.append((e, info, error))
    if ctx.json:
        ctx.emit_json([jsonout.module(e, info, error) for e, info, error in rows])
        return EXIT_OK
    if not rows:
        ctx.say("No PKCS#11 module found. Install OpenSC (opensc-pkcs11) or add one with --add PATH.")
    for e, info, error in rows:
        ctx.say(f"{e.name}: {e.path}")
        if e.aliases:
            ctx.say(f"  also at      : {', '.join(e.aliases)}")
        if e.realpath != e.path:
            ctx.say(f"  real path    : {e.realpath}")
        ctx.say(f"  found in     : {'; '.join(e.sources)}")
        if info is not None:
            ctx.say(f"  library      : {info.manufacturer} / {info.description} {info.library_version}"
                    f" (Cryptoki {info.cryptoki_version})")
        if error:
            ctx.say(f"  error        : {error}")
        if e.note:
            ctx.say(f"  note         : {e.note}")
    return EXIT_OK


def _print_token(ctx: Context, t: TokenInfo) -> None:
    ctx.say(f"  token label        : {t.label}")
    ctx.say(f"  token manufacturer : {t.manufacturer}")
    ctx.say(f"  token model        : {t.model}")
    ctx.say(f"  token flags        : {', '.join(t.flag_words)}")
    ctx.say(f"  hardware version   : {t.hardware_version}")
    ctx.say(f"  firmware version   : {t.firmware_version}")
    ctx.say(f"  serial num         : {t.serial}")
    lo = "?" if t.min_pin_len is None else t.min_pin_len
    hi = "?" if t.max_pin_len is None else t.max_pin_len
    ctx.say(f"  pin min/max        : {lo}/{hi}")
    ctx.say(f"  user PIN           : {t.user_pin.words}")
    ctx.say(f"  SO PIN             : {t.so_pin.words}")
    if t.total_public_memory is not None or t.free_public_memory is not None:
        ctx.say(f"  public memory      : {t.free_public_memory} free of {t.total_public_memory}")
    if t.utc_time:
        ctx.say(f"  token clock        : {t.utc_time}")


def cmd_slots(ctx: Context) -> int:
    modules = ctx.modules_to_search()
    paths = modules if modules is not None else [e.realpath for e in ctx.service.modules() if e.exists]
    explicit = modules is not None
    results: list[SlotReport] = []
    failed: list[tuple[str, E.CertDeskError]] = []
    futures = {p: ctx.service.slots(p, with_mechanisms=True) for p in paths}
    for path, fut in futures.items():
        try:
            results.extend(_wait(fut, "list the slots", MODULE_TIMEOUT))
        except E.CertDeskError as err:
            if explicit:
                raise
            failed.append((path, err))
    if ctx.json:
        ctx.emit_json([jsonout.slot(r) for r in results])
        return EXIT_OK
    current = None
    for r in results:
        if r.module != current:
            current = r.module
            ctx.say(f"Module {r.module}")
        s = r.slot
        ctx.say(f"Slot {s.slot_id} ({s.slot_id:#x}): {s.description}")
        ctx.say(f"  slot manufacturer  : {s.manufacturer}")
        ctx.say(f"  slot flags         : {', '.join(s.flag_words) or '(none)'}")
        if not s.token_present:
            ctx.say("  (empty)")
            continue
        if r.error:
            ctx.say(f"  token error        : {r.error}")
            continue
        if r.token is None:
            continue
        if not r.token.initialized:
            ctx.say("  token state        : uninitialized")
            continue
        _print_token(ctx, r.token)
        if ctx.args.mechanisms:
            ctx.say(f"  mechanisms ({len(r.mechanisms)}):")
            for m in r.mechanisms:
                size = f", keySize={{{m.min_key_size},{m.max_key_size}}}" if m.min_key_size or m.max_key_size else ""
                ctx.say(f"    {m.name}{size}, {', '.join(m.flag_words)}")
        else:
            ctx.say(f"  mechanisms         : {len(r.mechanisms)} (--mechanisms lists them)")
    if not results:
        ctx.say("No slots." if paths else "No PKCS#11 module found.")
    for path, failure in failed:
        ctx.note(f"{os.path.basename(path)}: {failure.message}")
    return EXIT_OK


def _access_words(o: ObjectInfo) -> str:
    words = []
    for flag, word in ((o.private, "private"), (o.sensitive, "sensitive"),
                       (o.always_sensitive, "always sensitive"), (o.extractable, "extractable"),
                       (o.never_extractable, "never extractable"), (o.local, "local"),
                       (o.always_authenticate, "always authenticate")):
        if flag:
            words.append(word)
    if o.modifiable is False:
        words.append("read-only")
    return ", ".join(words) or "(none)"


def _print_object(ctx: Context, o: ObjectInfo, now: datetime) -> None:
    kind = C.OBJECT_CLASS_WORDS.get(o.object_class, o.class_name)
    size = ""
    if o.key_type:
        size = f"; {o.key_type}"
        if o.curve:
            size += f" {o.curve}"
        elif o.bits:
            size += f" {o.bits}"
    ctx.say(f"{kind} object{size}")
    ctx.say(f"  label      : {o.label}")
    ctx.say(f"  ID         : {o.id_hex or '(none)'}")
    if o.usage:
        ctx.say(f"  usage      : {', '.join(o.usage)}")
    if o.object_class in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY, C.CKO_SECRET_KEY):
        ctx.say(f"  access     : {_access_words(o)}")
    c = o.certificate
    if c is not None:
        ctx.say(f"  subject    : {c.subject}")
        ctx.say(f"  issuer     : {c.issuer}")
        ctx.say(f"  serial     : {c.serial}")
        state = " (EXPIRED)" if c.not_after < now else ""
        ctx.say(f"  valid      : {c.not_before:%Y-%m-%d %H:%M} to {c.not_after:%Y-%m-%d %H:%M} UTC{state}")
        if c.key_usage:
            ctx.say(f"  key usage  : {', '.join(c.key_usage)}")
        if c.extended_key_usage:
            ctx.say(f"  ext. usage : {', '.join(c.extended_key_usage)}")
        if c.subject_alt_names:
            ctx.say(f"  alt. names : {', '.join(c.subject_alt_names)}")
        ctx.say(f"  SHA-256    : {c.sha256_fingerprint}")
    if o.application:
        ctx.say(f"  application: {o.application}")
    if o.object_class == C.CKO_DATA and o.value_length is not None:
        ctx.say(f"  size       : {o.value_length} bytes")
    ctx.say(f"  URI        : {o.uri}")
    if o.openssl_key:
        ctx.say(f"  OpenSSL key: {'  '.join(o.openssl_key)}")
    for p in o.problems:
        ctx.say(f"  problem    : {p}")


def print_listing(ctx: Context, listing: ObjectListing) -> None:
    t = listing.token
    ctx.say(f"Token {t.label!r} (serial {t.serial}) in slot {t.slot_id} of {t.module}")
    if not listing.logged_in and listing.token_info.login_required:
        ctx.say("Not logged in: private objects (private keys) are not shown; use --login to see them.")
    ctx.say("")
    if not listing.objects:
        ctx.say("No objects" + ("." if listing.logged_in else " visible without login."))
        return
    now = datetime.now(UTC)
    for o in listing.objects:
        _print_object(ctx, o, now)
    pairs = [g for g in listing.groups if g.private_keys or g.public_keys]
    if pairs:
        ctx.say("")
        ctx.say("Key pairs:")
        for g in pairs:
            parts = []
            if g.private_keys:
                parts.append("private key")
            if g.public_keys:
                parts.append("public key")
            if g.certificates:
                parts.append(f"{len(g.certificates)} certificate{'s' if len(g.certificates) > 1 else ''}")
            match = {True: "public keys agree", False: "PUBLIC KEYS DISAGREE",
                     None: "paired by ID; the public keys cannot all be compared"}[g.key_matches]
            ctx.say(f"  ID {g.id_hex or '(none)'} {g.label!r}: {' + '.join(parts)} ({match})")
    if listing.warnings:
        ctx.say("")
        ctx.say("Warnings:")
        for w in listing.warnings:
            ctx.say(f"  - {w}")


def cmd_objects(ctx: Context) -> int:
    ref = ctx.find_token()
    if ctx.args.login:
        login(ctx, ref)
    listing: ObjectListing = _wait(ctx.service.list_objects(ref), "list the objects")
    if ctx.json:
        ctx.emit_json(jsonout.objects(listing, attributes=ctx.args.attributes))
    else:
        print_listing(ctx, listing)
    return EXIT_OK


def _reader_slots(ctx: Context, names: set[str]) -> dict[str, SlotReport]:
    """The PKCS#11 slot each reader became (OpenSC names its slots after the readers)."""
    if not names:
        return {}
    out: dict[str, SlotReport] = {}
    paths = ctx.modules_to_search() or [e.realpath for e in ctx.service.modules() if e.exists]
    futures = [ctx.service.slots(p, with_mechanisms=False) for p in paths]
    for fut in futures:
        try:
            reports = _wait(fut, "list the slots", 2 * PCSC_TIMEOUT)
        except E.CertDeskError as err:
            log.debug("reader slots: %s", err.message)
            continue
        for r in reports:
            if r.slot.description in names and r.slot.description not in out:
                out[r.slot.description] = r
    return out


def _slot_words(r: SlotReport | None) -> str:
    if r is None:
        return "no PKCS#11 slot (no module serves this reader)"
    where = f"slot {r.slot.slot_id} of {os.path.basename(r.module)}"
    if r.token is not None and r.token.initialized:
        return f"{where}: token {r.token.label!r}"
    if r.error:
        return f"{where}: {r.error}"
    if not r.slot.token_present:
        return f"{where}: no card"
    return f"{where}: token not initialised"


def cmd_readers(ctx: Context) -> int:
    from cert_desk.pcsc.readers import PcscStatus, snapshot_within

    if ctx.args.watch:
        return _watch_readers(ctx)
    snap = snapshot_within(PCSC_TIMEOUT)
    slots = {} if ctx.args.no_slots or snap.status is PcscStatus.NOT_ANSWERING else _reader_slots(
        ctx, {r.name for r in snap.readers})
    if ctx.json:
        ctx.emit_json(jsonout.pcsc(snap, slots))
        return EXIT_OK
    ctx.say(f"pcscd: {snap.message or 'running.'}")
    if snap.hint:
        ctx.say(f"  {snap.hint}")
    for i, r in enumerate(snap.readers):
        ctx.say(f"Reader {i}: {r.name}")
        ctx.say(f"  card       : {r.state_words()}")
        if r.atr_info is not None:
            a = r.atr_info
            tck = "" if a.tck_ok is None else (" (TCK ok)" if a.tck_ok else " (TCK wrong)")
            ctx.say(f"  ATR        : {r.atr.hex(':').upper()}")
            ctx.say(f"  protocols  : {a.protocol_words()}{tck}")
            ctx.say(f"  historical : {a.historical_text()}")
            for p in a.problems:
                ctx.say(f"  ATR problem: {p}")
        if r.card_present:
            ctx.say(f"  device     : {f'{r.device.name} ({r.device.kind})' if r.device else 'unknown card'}")
        if not ctx.args.no_slots:
            ctx.say(f"  PKCS#11    : {_slot_words(slots.get(r.name))}")
    return EXIT_OK


def _watch_readers(ctx: Context) -> int:
    """One line per change until interrupted (Ctrl-C ends it with exit code 0)."""
    import queue
    import time as _time

    from cert_desk.pcsc.readers import PcscSnapshot, ReaderEvent, not_answering
    from cert_desk.pcsc.watch import STALL_S, ReaderWatcher

    changes: queue.SimpleQueue[tuple[PcscSnapshot, tuple[ReaderEvent, ...]]] = queue.SimpleQueue()
    watcher = ReaderWatcher(lambda snap, events: changes.put((snap, events))).start()
    first = True
    stalled = False
    try:
        while True:
            try:
                snap, events = changes.get(timeout=0.5)
            except queue.Empty:
                late = watcher.late_by() >= STALL_S
                if late == stalled:
                    continue
                # a hung pcscd blocks the watcher without an error: say so, and when it answers again
                stalled = late
                snap = watcher.last if not late and watcher.last is not None else not_answering()
                events = (ReaderEvent("pcscd-not-answering" if late else "pcscd-answering"),)
            stamp = _time.strftime("%Y-%m-%dT%H:%M:%S")
            if first:
                first = False
                if ctx.json:
                    ctx.emit_json({"time": stamp, "event": "state", "status": snap.status.value,
                                   "readers": [jsonout.reader(r, None) for r in snap.readers]})
                else:
                    names = ", ".join(r.name + (" (card)" if r.card_present else "") for r in snap.readers)
                    ctx.say(f"{stamp} {snap.message or 'pcscd is running.'} Readers: {names or 'none'}")
                    ctx.flush()
                events = tuple(e for e in events if e.kind not in ("reader-added", "card-inserted", "pcscd-started"))
            for e in events:
                if ctx.json:
                    ctx.emit_json({"time": stamp, "event": e.kind, "reader": e.reader or None,
                                   "atr": e.atr.hex(":").upper() if e.atr else None})
                else:
                    line = f"{stamp} {e.describe()}"
                    if e.kind in ("pcscd-stopped", "pcscd-not-answering"):
                        line += f". {snap.hint}"
                    ctx.say(line)
                    ctx.flush()
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        watcher.stop()


def cmd_demo(ctx: Context) -> int:
    from cert_desk import demo

    demo.activate()
    token = demo.ensure(ctx.service)
    if ctx.json:
        ctx.emit_json({
            "label": token.label, "directory": token.directory, "softhsm2_conf": token.conf,
            "module": token.module, "created": token.created, "user_pin": demo.DEMO_USER_PIN,
            "so_pin": demo.DEMO_SO_PIN, "user_pin_file": token.user_pin_file, "so_pin_file": token.so_pin_file,
        })
        return EXIT_OK
    ctx.say(("Created" if token.created else "Found") + f" the demo token {token.label!r}.")
    ctx.say(f"  directory     : {token.directory}")
    ctx.say(f"  SoftHSM2 conf : {token.conf}  (cert-desk --demo sets SOFTHSM2_CONF to it)")
    ctx.say(f"  module        : {token.module}")
    ctx.say(f"  user PIN      : {demo.DEMO_USER_PIN}  (also in {token.user_pin_file})")
    ctx.say(f"  SO PIN        : {demo.DEMO_SO_PIN}  (also in {token.so_pin_file})")
    ctx.say("These PINs are public: the demo token is for trying cert-desk, not for real keys.")
    ctx.say("")
    ctx.say("Try:  cert-desk --demo objects --login --pin-file " + token.user_pin_file)
    ctx.say("      cert-desk --demo            (opens the window on the demo token)")
    return EXIT_OK


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=APP_NAME,
        description="Manage PKCS#11 tokens (Nitrokey HSM, SmartCard-HSM, any PKCS#11 token) and use them "
                    "as your browser's keystore. With no command, opens the desktop window.",
        epilog="PINs are read from --pin-file FILE, the CERT_DESK_PIN / CERT_DESK_SO_PIN environment "
               "variables, or a prompt; never from the command line. Exit codes: 0 ok, 1 failed, 2 usage.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--demo", action="store_true",
                   help="use the SoftHSM2 demo token (created on first use; see 'cert-desk demo')")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")
    p.add_argument("--smoke-test", action="store_true",
                   help="open the window, wait until it is up and has listed the modules, then exit 0 (packaging "
                        "checks; exit 1 when that takes over 60 s)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output (docs/cli-json.md)")
        sp.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                        help="use the SoftHSM2 demo token")

    def token_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: every discovered module)")
        g = sp.add_argument_group("which token")
        g.add_argument("--token", metavar="LABEL", help="the token's label")
        g.add_argument("--serial", metavar="S", help="the token's serial number")
        g.add_argument("--slot", metavar="ID", type=_slot_id, help="the PKCS#11 slot ID (decimal or 0x hex)")

    def pin_options(sp: argparse.ArgumentParser) -> None:
        g = sp.add_argument_group("login")
        g.add_argument("--login", action="store_true", help="log in as user (shows private objects)")
        g.add_argument("--pin-file", metavar="FILE",
                       help=f"read the PIN from the first line of FILE ('-': stdin); else ${PIN_ENV} or a prompt")
        g.add_argument("--allow-final-try", action="store_true",
                       help="try the PIN even when the token says one more wrong PIN locks it")

    sp = sub.add_parser("modules", help="list the PKCS#11 modules on this machine")
    common(sp)
    sp.add_argument("--add", metavar="PATH", help="remember a module path (checked by loading it)")
    sp.add_argument("--remove", metavar="PATH", help="forget a module path you added")
    sp.add_argument("--module", metavar="PATH", help=argparse.SUPPRESS)
    sp.set_defaults(func=cmd_modules)

    sp = sub.add_parser("slots", help="list slots and tokens, like pkcs11-tool -L")
    common(sp)
    sp.add_argument("--module", metavar="PATH", help="PKCS#11 module (default: every discovered module)")
    sp.add_argument("--mechanisms", action="store_true", help="list each token's mechanisms with key sizes")
    sp.set_defaults(func=cmd_slots)

    sp = sub.add_parser("objects", help="list a token's objects, like pkcs11-tool -O")
    common(sp)
    sp.add_argument("--attributes", action="store_true",
                    help="with --json: add every attribute read, by CKA name ('attributes')")
    token_options(sp)
    pin_options(sp)
    sp.set_defaults(func=cmd_objects)

    sp = sub.add_parser("readers", help="smart card readers, their cards (ATR) and PKCS#11 slots")
    common(sp)
    sp.add_argument("--watch", action="store_true", help="print one line per reader or card change until Ctrl-C")
    sp.add_argument("--no-slots", action="store_true", help="do not load PKCS#11 modules to name the slots")
    sp.add_argument("--module", metavar="PATH", help="the PKCS#11 module that serves the readers (default: all)")
    sp.set_defaults(func=cmd_readers)

    from cert_desk import cli_admin, cli_desktop, cli_lifecycle, cli_nss, cli_schsm

    cli_lifecycle.add_commands(sub, common, token_options, pin_options)
    cli_nss.add_commands(sub, common)
    cli_admin.add_commands(sub, common, token_options)
    cli_schsm.add_commands(sub, common)
    cli_desktop.add_commands(sub, common)

    sp = sub.add_parser("demo", help="create (once) and describe the SoftHSM2 demo token")
    common(sp)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("gui", help="open the desktop window (the default without a command)")
    sp.add_argument("--demo", action="store_true", default=argparse.SUPPRESS, help="open on the demo token")
    sp.set_defaults(func=None)
    return p


def setup_logging(verbose: int) -> None:
    from cert_desk.logsetup import configure

    configure(verbose)


def run(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (the GUI path does not return until the window closes)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    setup_logging(args.verbose)
    if getattr(args, "demo", False):
        from cert_desk import demo

        try:
            demo.activate()
        except OSError as e:
            print(f"{APP_NAME}: cannot prepare the demo token directory: {e}", file=err)
            return EXIT_FAILED
    func: Callable[[Context], int] | None = getattr(args, "func", None)
    if func is None:
        from cert_desk.ui.app import main as gui_main

        return gui_main(demo=bool(getattr(args, "demo", False)), smoke_test=bool(args.smoke_test))
    # A CLI run is short and builds many small objects (a listing of 3,000 token objects
    # makes ~200,000): collecting cycles every 700 allocations costs 10-20% of its time.
    gc.set_threshold(100_000, 50, 100)
    ctx = Context(args, out, err)
    try:
        if getattr(args, "demo", False) and args.command != "demo":
            from cert_desk import demo

            demo.ensure(ctx.service)  # --demo creates the demo token on first use
        return func(ctx)
    except E.CertDeskError as e:
        ctx.flush()
        print(f"{APP_NAME}: {e}", file=err)
        if ctx.json:
            ctx.emit_json(jsonout.error(e))
        return EXIT_FAILED
    except E.WrongThreadError as e:
        log.exception("thread rule broken")
        print(f"{APP_NAME}: internal error: {e}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{APP_NAME}: interrupted", file=err)
        return 130
    except Exception as e:  # a bug: say so plainly, keep the traceback for the log file
        log.exception("unexpected error in %s", args.command)
        from cert_desk.paths import log_file

        print(f"{APP_NAME}: internal error: {type(e).__name__}: {e} (details in {log_file()})", file=err)
        return EXIT_FAILED
    finally:
        ctx.close()
