"""``cert-desk token init`` and ``cert-desk pin change|unblock|change-so|remember|forget|keyring``.

PINs come from files (``--pin-file``, ``--so-pin-file``, ``--new-pin-file``), the environment
(``CERT_DESK_PIN``, ``CERT_DESK_SO_PIN``, ``CERT_DESK_NEW_PIN``) or the terminal (a new PIN is
typed twice); never from an option's value.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from typing import Any

from cert_desk import errors as E
from cert_desk.models import TokenInfo, TokenRef
from cert_desk.secrets import PIN_ENV, SO_PIN_ENV, Secret, read_pin_file
from cert_desk.secrets.sources import pin_from_env

NEW_PIN_ENV = "CERT_DESK_NEW_PIN"
EXIT_OK = 0


def _secret(ctx: Any, *, option: str, env: str, prompt: str, repeat: bool = False) -> Secret:
    path = getattr(ctx.args, option, None)
    if path:
        return read_pin_file(path)
    found = pin_from_env(env)
    if found is not None:
        return found
    if sys.stdin.isatty():
        ctx.flush()
        value = getpass.getpass(f"{prompt}: ")
        if not value:
            raise E.CancelledError("Nothing entered; nothing was changed.")
        if repeat and getpass.getpass(f"{prompt} again: ") != value:
            raise E.InputError("The two entries differ; nothing was changed.", "Type the new PIN twice, the same.")
        return Secret(value, "prompt")
    flag = "--" + option.replace("_", "-")
    raise E.PinRequiredError(f"{prompt} is needed.", hint=f"Give it with {flag} FILE or ${env}.")


def _service(ctx: Any) -> Any:
    from cert_desk.services.admin import AdminService

    return AdminService(ctx.service)


def _wait(future: Any, what: str) -> Any:
    from cert_desk.cli import _wait as wait

    return wait(future, what)


def _token(ctx: Any) -> tuple[TokenRef, TokenInfo]:
    ref: TokenRef = ctx.find_token()
    info: TokenInfo = _wait(ctx.service.token_info(ref), "read the token information")
    return ref, info


def _say_state(ctx: Any, info: TokenInfo) -> None:
    ctx.say(f"  user PIN : {info.user_pin.words}")
    ctx.say(f"  SO PIN   : {info.so_pin.words}")


def cmd_token_init(ctx: Any) -> int:
    from cert_desk.pkcs11.admin import check_init_confirmation, check_label

    args = ctx.args
    modules = ctx.modules_to_search()
    if not modules:
        raise E.InputError("Name the module: --module PATH (initialising needs an exact slot).")
    label = check_label(args.label)
    service = _service(ctx)
    before: TokenInfo | None = service.slot_token(modules[0], args.slot)
    if before is not None and before.initialized:
        check_init_confirmation(before, args.slot, args.confirm)  # before any PIN is asked for
        if before.so_pin is E.PinState.LOCKED:
            raise E.PinLockedError(f"The SO PIN of {before.label!r} is locked: it cannot be initialised with it.",
                                   so=True, hint="Some devices can be reset only by their vendor's tool.")
        so_pin = _secret(ctx, option="so_pin_file", env=SO_PIN_ENV, prompt=f"Current SO PIN of {before.label!r}")
    else:
        so_pin = _secret(ctx, option="so_pin_file", env=SO_PIN_ENV, prompt=f"SO PIN for the new token {label!r}",
                         repeat=True)
    from cert_desk.cli import confirm_final_try

    allow = before is not None and before.initialized and confirm_final_try(ctx, before, so=True)
    ref, notice = service.init_token(modules[0], args.slot, so_pin=so_pin, label=label, confirm=args.confirm,
                                     allow_final_try=allow)
    ctx.say(f"Initialised {ref.describe()}. Next: set its user PIN (cert-desk pin unblock --serial {ref.serial}).")
    if notice:
        ctx.note(notice)
    return EXIT_OK


def _refuse_locked(info: TokenInfo, *, so: bool) -> None:
    """Say a locked PIN before asking for any PIN: nothing would be tried."""
    state = info.so_pin if so else info.user_pin
    if state is E.PinState.LOCKED:
        raise E.PinLockedError(f"The {'SO PIN' if so else 'PIN'} of {info.label!r} is locked; nothing was tried.",
                               so=so)


def _report(ctx: Any, result: Any, done: str) -> int:
    ctx.say(done)
    if result.notice:
        ctx.note(result.notice)
    _say_state(ctx, result.token)
    return EXIT_OK


def cmd_pin_remember(ctx: Any) -> int:
    """Check the PIN by logging in with it, then store it in the keyring for this token."""
    from cert_desk.secrets import remembered

    status = remembered.keyring_status()
    if not status.available:
        raise E.KeyringError(status.reason, "Install and start GNOME Keyring or KWallet; nothing was stored.")
    ref, info = _token(ctx)
    if info.protected_authentication_path:
        raise E.InputError(f"{info.label!r} has a PIN pad: its PIN is typed there and cannot be remembered.")
    pin = _secret(ctx, option="pin_file", env=PIN_ENV, prompt=f"PIN of {info.label!r} to remember")
    from cert_desk.cli import confirm_final_try

    allow = confirm_final_try(ctx, info)
    _wait(ctx.service.login(ref, pin, allow_final_try=allow), "log in")
    try:
        remembered.remember(ref.serial, ref.label, pin)
    finally:
        _wait(ctx.service.logout(ref), "log out")
    ctx.say(f"The PIN of {ref.describe()} is remembered in the keyring ({status.backend}). cert-desk uses it when "
            "no --pin-file or CERT_DESK_PIN is given, and deletes it the first time the token refuses it.")
    return EXIT_OK


def cmd_pin_forget(ctx: Any) -> int:
    from cert_desk.secrets import remembered

    args = ctx.args
    if args.serial and args.token:  # a lost or broken token's PIN can be forgotten without it
        serial, label, what = args.serial, args.token, f"token {args.token!r} (serial {args.serial})"
    else:
        ref = ctx.find_token()
        serial, label, what = ref.serial, ref.label, ref.describe()
    if remembered.forget(serial, label):
        ctx.say(f"Deleted the PIN remembered for {what}.")
    else:
        ctx.say(f"No PIN is remembered for {what}.")
    return EXIT_OK


def cmd_pin_keyring(ctx: Any) -> int:
    from cert_desk.secrets import remembered

    status = remembered.keyring_status()
    if ctx.args.json:
        ctx.emit_json({"available": status.available, "backend": status.backend, "reason": status.reason})
    elif status.available:
        ctx.say(f"PINs can be remembered: {status.backend}.")
    else:
        ctx.say(f"PINs cannot be remembered: {status.reason}")
    return EXIT_OK if status.available else 1


def cmd_pin_change(ctx: Any) -> int:
    ref, info = _token(ctx)
    _refuse_locked(info, so=False)
    old = _secret(ctx, option="pin_file", env=PIN_ENV, prompt=f"Current PIN of {info.label!r}")
    new = _secret(ctx, option="new_pin_file", env=NEW_PIN_ENV, prompt=f"New PIN for {info.label!r}", repeat=True)
    result = _wait(_service(ctx).change_pin(ref, old=old, new=new, allow_final_try=ctx.args.allow_final_try),
                   "change the PIN")
    return _report(ctx, result, f"Changed the PIN of {ref.describe()}.")


def cmd_pin_unblock(ctx: Any) -> int:
    ref, info = _token(ctx)
    _refuse_locked(info, so=True)
    so = _secret(ctx, option="so_pin_file", env=SO_PIN_ENV, prompt=f"SO PIN of {info.label!r}")
    new = _secret(ctx, option="new_pin_file", env=NEW_PIN_ENV, prompt=f"New user PIN for {info.label!r}",
                  repeat=True)
    result = _wait(_service(ctx).set_user_pin(ref, so_pin=so, new_pin=new), "set the user PIN")
    return _report(ctx, result, f"Set a new user PIN on {ref.describe()}.")


def cmd_pin_change_so(ctx: Any) -> int:
    ref, info = _token(ctx)
    _refuse_locked(info, so=True)
    old = _secret(ctx, option="so_pin_file", env=SO_PIN_ENV, prompt=f"Current SO PIN of {info.label!r}")
    new = _secret(ctx, option="new_pin_file", env=NEW_PIN_ENV, prompt=f"New SO PIN for {info.label!r}",
                  repeat=True)
    result = _wait(_service(ctx).change_pin(ref, old=old, new=new, so=True,
                                            allow_final_try=ctx.args.allow_final_try), "change the SO PIN")
    return _report(ctx, result, f"Changed the SO PIN of {ref.describe()}.")


def add_commands(sub: Any, common: Callable[..., None], token_options: Callable[[Any], None]) -> None:
    token = sub.add_parser("token", help="initialise a token (erases it)")
    token_sub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    sp = token_sub.add_parser("init", help="initialise the token in a slot: erases every key and certificate")
    common(sp, json_flag=False)
    sp.add_argument("--module", required=True, metavar="PATH", help="the PKCS#11 module")
    sp.add_argument("--slot", required=True, type=_slot_id, metavar="ID", help="the slot (see 'cert-desk slots')")
    sp.add_argument("--label", required=True, help="the new token's label (at most 32 bytes)")
    sp.add_argument("--confirm", metavar="LABEL", help="the current token's label, typed back: it is erased")
    sp.add_argument("--so-pin-file", metavar="FILE",
                    help=f"the SO PIN: the current one of an initialised token, else the new one (else ${SO_PIN_ENV} "
                         "or a prompt)")
    sp.add_argument("--allow-final-try", action="store_true",
                    help="try the SO PIN even when the token says one more wrong one locks it")
    sp.set_defaults(func=cmd_token_init)

    pin = sub.add_parser("pin", help="change, unblock or change the SO PIN")
    pin_sub = pin.add_subparsers(dest="pin_command", metavar="COMMAND", required=True)
    for name, func, text in (
        ("change", cmd_pin_change, "change the user PIN (the current one is needed)"),
        ("unblock", cmd_pin_unblock, "set a new user PIN with the SO PIN (a locked PIN, or a fresh token)"),
        ("change-so", cmd_pin_change_so, "change the SO PIN"),
    ):
        sp = pin_sub.add_parser(name, help=text)
        common(sp, json_flag=False)
        token_options(sp)
        if name == "change":
            sp.add_argument("--pin-file", metavar="FILE", help=f"the current PIN (else ${PIN_ENV} or a prompt)")
        else:
            sp.add_argument("--so-pin-file", metavar="FILE", help=f"the SO PIN (else ${SO_PIN_ENV} or a prompt)")
        sp.add_argument("--new-pin-file", metavar="FILE", help=f"the new PIN (else ${NEW_PIN_ENV} or a prompt, twice)")
        sp.add_argument("--allow-final-try", action="store_true",
                        help=f"try the {'current PIN' if name == 'change' else 'SO PIN'} even when the token says "
                             "one more wrong one locks it")
        sp.set_defaults(func=func)

    sp = pin_sub.add_parser("remember", help="check the user PIN, then keep it in the OS keyring for this token")
    common(sp, json_flag=False)
    token_options(sp)
    sp.add_argument("--pin-file", metavar="FILE", help=f"the PIN (else ${PIN_ENV} or a prompt)")
    sp.add_argument("--allow-final-try", action="store_true",
                    help="try the PIN even when the token says one more wrong PIN locks it")
    sp.set_defaults(func=cmd_pin_remember)
    sp = pin_sub.add_parser("forget", help="delete the PIN remembered for this token")
    common(sp, json_flag=False)
    token_options(sp)
    sp.set_defaults(func=cmd_pin_forget)
    sp = pin_sub.add_parser("keyring", help="say whether PINs can be remembered here, and where")
    common(sp, json_flag=True)
    sp.set_defaults(func=cmd_pin_keyring)


def _slot_id(text: str) -> int:
    from cert_desk.cli import _slot_id as parse

    return parse(text)
