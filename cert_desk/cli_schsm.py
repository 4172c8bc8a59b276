"""``cert-desk schsm status|init|create-share|import-share|wrap|unwrap``: a SmartCard-HSM or
Nitrokey HSM through OpenSC's ``sc-hsm-tool`` (see :mod:`cert_desk.pkcs11.schsm`).

``--reader N`` is the reader's number as OpenSC counts them (the order ``cert-desk readers``
lists them in). PINs and share passwords come from files or the environment (``CERT_DESK_PIN``,
``CERT_DESK_SO_PIN``, ``CERT_DESK_SHARE_PASSWORD``) or a prompt, and reach the tool through a
pseudo-terminal at its own prompts, never on its command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cert_desk import errors as E
from cert_desk.pkcs11 import schsm
from cert_desk.secrets import PIN_ENV, SO_PIN_ENV

SHARE_PASSWORD_ENV = "CERT_DESK_SHARE_PASSWORD"  # noqa: S105 - the variable's name, not a password
TOOL_ENV = "CERT_DESK_SC_HSM_TOOL"


def tool() -> str:
    """``sc-hsm-tool``, or the program ``CERT_DESK_SC_HSM_TOOL`` names (another OpenSC build)."""
    return os.environ.get(TOOL_ENV) or schsm.TOOL


def _secret(ctx: Any, option: str, env: str, prompt: str, *, repeat: bool = False) -> Any:
    from cert_desk.cli_admin import _secret as get

    return get(ctx, option=option, env=env, prompt=prompt, repeat=repeat)


def status_lines(status: schsm.ScHsmStatus) -> list[str]:
    """The status in words, warnings first."""
    out = [f"  applet version     : {status.version}"]
    if not status.initialized:
        out.append("  state              : never initialised (initialise it to set the SO PIN and user PIN)")
        return out
    out.append(f"  user PIN           : {status.user_pin_state.words}"
               + (f" ({status.user_pin_tries} tries left)" if status.user_pin_tries is not None else ""))
    out.append(f"  SO PIN             : {status.so_pin_state.words}"
               + (f" ({status.so_pin_tries} tries left)" if status.so_pin_tries is not None else ""))
    for option in status.config_options:
        out.append(f"  option             : {option}")
    d = status.dkek
    if d is None:
        out.append("  DKEK               : unknown (the token did not say; see the warnings)")
    else:
        out.append(f"  DKEK shares        : {d.shares if d.shares is not None else '?'}")
        if d.outstanding:
            out.append(f"  DKEK               : {d.outstanding} share(s) still to import: no key can be generated "
                       "or imported until then")
        elif d.kcv is not None:
            out.append(f"  DKEK check value   : {d.kcv.hex(':').upper()}")
            if d.all_zero_kcv:
                out.append("  WARNING            : the DKEK check value is all zero: no DKEK is set, so keys cannot "
                           "be backed up (wrapped). Initialise with --dkek-shares to have one.")
    for w in status.warnings:
        out.append(f"  warning            : {w}")
    return out


def cmd_status(ctx: Any) -> int:
    status = schsm.dkek_state(ctx.args.reader, tool=tool())
    if ctx.args.json:
        d = status.dkek
        ctx.emit_json({
            "version": status.version, "initialized": status.initialized,
            "user_pin": status.user_pin_state.name.lower(), "user_pin_tries": status.user_pin_tries,
            "so_pin": status.so_pin_state.name.lower(), "so_pin_tries": status.so_pin_tries,
            "config_options": list(status.config_options),
            "dkek": None if d is None else {"shares": d.shares, "outstanding": d.outstanding,
                                            "kcv": d.kcv.hex() if d.kcv is not None else None,
                                            "all_zero_kcv": d.all_zero_kcv},
            "warnings": list(status.warnings),
        })
        return 0
    ctx.say(f"SmartCard-HSM in reader {ctx.args.reader}:")
    for line in status_lines(status):
        ctx.say(line)
    return 0


def cmd_init(ctx: Any) -> int:
    args = ctx.args
    if args.confirm != "ERASE":
        raise E.ConfirmationRequired("Initialising a SmartCard-HSM erases every key and certificate on it.",
                                     "Add --confirm ERASE to go ahead.")
    schsm.check_label(args.label)
    schsm.check_dkek_shares(args.dkek_shares)
    so = _secret(ctx, "so_pin_file", SO_PIN_ENV, "SO PIN (16 hex digits)", repeat=True)
    schsm.check_so_pin(so)
    user = _secret(ctx, "pin_file", PIN_ENV, "initial user PIN (6-15 characters)", repeat=True)
    schsm.check_user_pin(user)
    out = schsm.initialize(args.reader, so_pin=so, user_pin=user, label=args.label, dkek_shares=args.dkek_shares,
                           pin_retry=args.pin_retry, allow_final_try=args.allow_final_try, tool=tool())
    ctx.say(f"Initialised the SmartCard-HSM in reader {args.reader}."
            + (f" Import its {args.dkek_shares} DKEK share(s) next (cert-desk schsm import-share)."
               if args.dkek_shares else ""))
    if out.strip() and ctx.args.verbose:
        ctx.note(out.strip())
    return 0


def cmd_create_share(ctx: Any) -> int:
    password = _secret(ctx, "password_file", SHARE_PASSWORD_ENV, "password for the new DKEK share", repeat=True)
    schsm.create_dkek_share(Path(ctx.args.out), password, reader=ctx.args.reader, tool=tool())
    ctx.say(f"Wrote the DKEK share {ctx.args.out}. Keep it and its password apart, and safe: together they restore "
            "every wrapped key.")
    return 0


def cmd_import_share(ctx: Any) -> int:
    password = _secret(ctx, "password_file", SHARE_PASSWORD_ENV, f"password of {ctx.args.share}")
    state = schsm.import_dkek_share(ctx.args.reader, Path(ctx.args.share), password, tool=tool())
    if state.outstanding:
        ctx.say(f"Imported the share; {state.outstanding} more to import.")
    else:
        kcv = state.kcv.hex(":").upper() if state.kcv is not None else "?"
        ctx.say(f"Imported the last share. DKEK check value: {kcv} (compare it with the one noted when the shares "
                "were made).")
    return 0


def cmd_wrap(ctx: Any) -> int:
    pin = _secret(ctx, "pin_file", PIN_ENV, "user PIN")
    schsm.wrap_key(ctx.args.reader, ctx.args.key_ref, Path(ctx.args.out), pin,
                   allow_final_try=ctx.args.allow_final_try, tool=tool())
    ctx.say(f"Wrapped key {ctx.args.key_ref} into {ctx.args.out}.")
    return 0


def cmd_unwrap(ctx: Any) -> int:
    pin = _secret(ctx, "pin_file", PIN_ENV, "user PIN")
    schsm.unwrap_key(ctx.args.reader, ctx.args.key_ref, Path(ctx.args.file), pin, force=ctx.args.force,
                     allow_final_try=ctx.args.allow_final_try, tool=tool())
    ctx.say(f"Unwrapped {ctx.args.file} into key reference {ctx.args.key_ref}.")
    return 0


def add_commands(sub: Any, common: Callable[..., None]) -> None:
    p = sub.add_parser("schsm", help="SmartCard-HSM / Nitrokey HSM: DKEK backup, initialise (sc-hsm-tool)")
    s = p.add_subparsers(dest="schsm_command", metavar="COMMAND", required=True)

    def cmd(name: str, func: Callable[[Any], int], text: str, *, json_flag: bool = False) -> Any:
        sp = s.add_parser(name, help=text)
        common(sp, json_flag=json_flag)
        sp.add_argument("--reader", type=int, default=0, metavar="N",
                        help="the reader's number as OpenSC counts them (default 0)")
        sp.set_defaults(func=func)
        return sp

    cmd("status", cmd_status, "PIN tries, DKEK shares and key check value", json_flag=True)
    sp = cmd("init", cmd_init, "initialise: erases everything, sets SO PIN, user PIN, DKEK shares")
    sp.add_argument("--label", help="the token's label")
    sp.add_argument("--dkek-shares", type=int, metavar="N", help="DKEK shares to import afterwards (none: no DKEK)")
    sp.add_argument("--pin-retry", type=int, metavar="N", help="user PIN tries before it locks (default 3)")
    sp.add_argument("--confirm", metavar="ERASE", help="type ERASE: everything on the token is erased")
    sp.add_argument("--so-pin-file", metavar="FILE", help=f"the new SO PIN (else ${SO_PIN_ENV} or a prompt)")
    sp.add_argument("--pin-file", metavar="FILE", help=f"the initial user PIN (else ${PIN_ENV} or a prompt)")
    sp.add_argument("--allow-final-try", action="store_true", help="try the SO PIN even with one try left")
    sp = cmd("create-share", cmd_create_share, "create a password-protected DKEK share file")
    sp.add_argument("--out", required=True, metavar="FILE", help="the share file to create (not overwritten)")
    sp.add_argument("--password-file", metavar="FILE", help=f"its password (else ${SHARE_PASSWORD_ENV} or a prompt)")
    sp = cmd("import-share", cmd_import_share, "import a DKEK share into the token")
    sp.add_argument("--share", required=True, metavar="FILE", help="the share file")
    sp.add_argument("--password-file", metavar="FILE", help=f"its password (else ${SHARE_PASSWORD_ENV} or a prompt)")
    for name, func, text in (("wrap", cmd_wrap, "wrap (back up) a key under the DKEK into a file"),
                             ("unwrap", cmd_unwrap, "unwrap a key file into the token")):
        sp = cmd(name, func, text)
        sp.add_argument("--key-ref", type=int, required=True, metavar="N", help="the key reference (1-255)")
        if name == "wrap":
            sp.add_argument("--out", required=True, metavar="FILE", help="the file to write (not overwritten)")
        else:
            sp.add_argument("--file", required=True, metavar="FILE", help="the wrapped key")
            sp.add_argument("--force", action="store_true", help="replace a key at that reference")
        sp.add_argument("--pin-file", metavar="FILE", help=f"the user PIN (else ${PIN_ENV} or a prompt)")
        sp.add_argument("--allow-final-try", action="store_true", help="try the PIN even with one try left")
