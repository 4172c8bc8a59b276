"""``cert-desk nss``: the browsers' NSS databases, the token's module in them, and a TLS login test.

The seed: stop the browser, ``modutil -dbdir sql:.pki/nssdb/ -add my_HSM -libfile
opensc-pkcs11.so``, ``modutil -list``, restart the browser. Here every database is found, a
running browser refuses the change (and is named), ``pkcs11.txt`` is backed up and restored if
anything fails, adding what is there is a no-op, and the result is read back with NSS's tools.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from cert_desk import errors as E
from cert_desk.secrets import PIN_ENV, Secret, read_pin_file
from cert_desk.secrets.sources import pin_from_env
from cert_desk.services.browsers import creatable, where

EXIT_OK = 0


def _service(ctx: Any) -> Any:
    from cert_desk.services.browsers import BrowserService

    return BrowserService()


def _wait(future: Any, what: str) -> Any:
    from cert_desk.cli import _wait as wait

    return wait(future, what, 300)  # creating, probing, changing and listing: up to 30 s each


def _databases(ctx: Any, svc: Any) -> list[Any]:
    """The states of the databases ``--db``/``--all`` name (every one for ``nss list``)."""
    module = getattr(ctx.args, "module", None)
    module = module_path(module) if module else None
    states = list(_wait(svc.scan(module), "find the NSS databases"))
    wanted = getattr(ctx.args, "db", None)
    if wanted:
        from cert_desk.nss.discovery import database_at
        from cert_desk.services.browsers import state

        directory = os.path.realpath(os.path.expanduser(wanted.removeprefix("sql:")))
        found = [s for s in states if os.path.realpath(s.db.directory) == directory]
        if found:
            return found
        db = database_at(directory)
        return [state(db, os.path.realpath(module) if module else "")]
    return states


def cmd_list(ctx: Any) -> int:
    from cert_desk import jsonout

    svc = _service(ctx)
    try:
        states = _databases(ctx, svc)
    finally:
        svc.shutdown()
    if ctx.json:
        ctx.emit_json([jsonout.nss_state(s) for s in states])
        return EXIT_OK
    if not states:
        ctx.say("No browser or mail client NSS database found.")
    module = getattr(ctx.args, "module", None)
    for s in states:
        db = s.db
        ctx.say(f"{where(db)}: {db.spec}" + ("  (default profile)" if db.default else ""))
        ctx.say(f"  format     : {db.format}" + (f" — {db.reason}" if db.reason else ""))
        if s.running is not None:
            ctx.say(f"  running    : {s.running.evidence}")
        if s.problem and s.problem != db.reason:
            ctx.say(f"  problem    : {s.problem}")
        for m in s.modules:
            if m.internal:
                continue
            mark = " <- this module" if module and m in s.registered else ""
            ctx.say(f"  module     : {m.name!r}: {m.library}{mark}")
        if module and db.supported:
            words = ("registered" if s.registered else
                     f"available through p11-kit's proxy ({s.via_proxy!r})" if s.via_proxy else "not registered")
            ctx.say(f"  {os.path.basename(module)}: {words}")
        for c in s.conflicts:
            ctx.say(f"  conflict   : {c}")
    return EXIT_OK


def _change(ctx: Any, action: Callable[[Any, Any], Any], what: str) -> int:
    from cert_desk import jsonout

    args = ctx.args
    if not args.all and not args.db:
        raise E.InputError("Name the database: --db sql:DIR, or --all for every one found.")
    svc = _service(ctx)
    results: list[Any] = []
    failures: list[str] = []
    try:
        for s in _databases(ctx, svc):
            creating = getattr(args, "create", False) and creatable(s.db)
            if args.all and not s.db.supported and not creating:
                ctx.note(f"{where(s.db)}: skipped ({s.db.reason}).")
                continue
            try:
                results.append(_wait(action(svc, s.db), what))
            except E.CertDeskError as err:
                failures.append(f"{where(s.db)}: {err}")
                if not args.all:
                    raise
    finally:
        svc.shutdown()
    if ctx.json:
        ctx.emit_json({"changes": [jsonout.nss_change(c) for c in results], "failures": failures})
    else:
        for c in results:
            ctx.say(c.words)
            for m in c.loaded:  # read back with modutil -list: what NSS itself now loads
                if m.name == getattr(args, "name", None):
                    tokens = ", ".join(s.token for s in m.slots if s.token) or "no token present"
                    ctx.say(f"  NSS loads it: {m.status}; tokens: {tokens}")
        for f in failures:
            ctx.note(f)
    return 1 if failures else EXIT_OK


def module_path(text: str) -> str:
    """``--module`` as NSS reads ``library=``: a bare file name (the seed's ``-libfile
    opensc-pkcs11.so``) is found in the system's library directories, a path is a path."""
    from cert_desk.nss.pkcs11txt import resolve_library

    value = os.path.expanduser(text)
    if "/" not in value:
        found = resolve_library(value)
        if found:
            return found
    return os.path.abspath(value)


def cmd_add(ctx: Any) -> int:
    args = ctx.args
    module = module_path(args.module)
    return _change(ctx, lambda svc, db: svc.add(db, args.name, module, create=args.create), "register the module")


def cmd_remove(ctx: Any) -> int:
    args = ctx.args
    return _change(ctx, lambda svc, db: svc.remove(db, args.name), "remove the module")


def _pin(ctx: Any, what: str) -> Secret | None:
    pin_file = getattr(ctx.args, "pin_file", None)
    if pin_file:
        return read_pin_file(pin_file)
    env = pin_from_env(PIN_ENV)
    if env is not None:
        return env
    if sys.stdin.isatty():
        ctx.flush()
        value = getpass.getpass(f"PIN of {what}: ")
        return Secret(value, "prompt") if value else None
    raise E.PinRequiredError(f"The TLS login needs the PIN of {what}.")


def cmd_test(ctx: Any) -> int:
    args = ctx.args
    svc = _service(ctx)
    try:
        states = _databases(ctx, svc)
        token = args.nickname.split(":", 1)[0] if ":" in args.nickname else args.nickname
        pin = _pin(ctx, f"token {token!r}")
        result = _wait(svc.test_login(states[0].db, args.nickname, args.url, pin), "log in over TLS")
    finally:
        svc.shutdown()
    if ctx.json:
        ctx.emit_json({"ok": result.ok, "words": result.words, "server_saw": result.server_saw or None,
                       "protocol": result.protocol or None})
    else:
        ctx.say(result.words)
        if result.server_saw:
            ctx.say(f"The server saw: {result.server_saw}")
    return EXIT_OK if result.ok else 1


def add_commands(sub: Any, common: Callable[..., None]) -> None:
    nss = sub.add_parser("nss", help="the browsers' NSS databases: list, add or remove the token's module, test")
    nss_sub = nss.add_subparsers(dest="nss_command", metavar="COMMAND", required=True)

    sp = nss_sub.add_parser("list", help="every NSS database of your browsers and mail client, and their modules")
    common(sp)
    sp.add_argument("--module", metavar="PATH", help="say where this PKCS#11 module stands in each database")
    sp.add_argument("--db", metavar="sql:DIR", help="only this database")
    sp.set_defaults(func=cmd_list)

    for name, func, verb in (("add", cmd_add, "register"), ("remove", cmd_remove, "remove")):
        sp = nss_sub.add_parser(name, help=f"{verb} a PKCS#11 module in one or every database (not while the "
                                           "browser runs)")
        common(sp)
        where = sp.add_mutually_exclusive_group()
        where.add_argument("--db", metavar="sql:DIR", help="the database")
        where.add_argument("--all", action="store_true", help="every database found")
        sp.add_argument("--name", required=True, help="the module's name in the database (e.g. 'Nitrokey HSM')")
        if name == "add":
            sp.add_argument("--module", required=True, metavar="PATH",
                            help="the PKCS#11 module to register (a path, or a file name found as NSS finds it)")
            sp.add_argument("--create", action="store_true", help="create the database if it does not exist "
                                                                  "(Chrome's, before Chrome ever ran)")
        sp.set_defaults(func=func)

    sp = nss_sub.add_parser("test", help="log in to a TLS server with the token's certificate, through the "
                                         "database (NSS's tstclnt)")
    common(sp)
    sp.add_argument("--db", required=True, metavar="sql:DIR", help="the database the module is registered in")
    sp.add_argument("--url", required=True, help="https://HOST:PORT/ of a server that asks for a client certificate")
    sp.add_argument("--nickname", required=True, metavar="TOKEN:LABEL",
                    help="the certificate as NSS names it: the token's label, a colon, the certificate's label")
    sp.add_argument("--pin-file", metavar="FILE", help=f"the token's PIN (else ${PIN_ENV} or a prompt)")
    sp.set_defaults(func=cmd_test)
