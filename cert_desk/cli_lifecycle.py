"""The certificate lifecycle commands: keygen, delete, csr, import, doctor, verify, ca, openssl-config.

They follow the seed's flow (``pkcs11-tool --keypairgen``, a CSR through an OpenSSL engine,
``openssl ca``, ``pkcs11-tool --write-object``, ``openssl verify -x509_strict``) without its
traps: PINs and CA passphrases never on a command line, certificates written with their key's
CKA_ID, nothing written when the input is wrong. Commands that change a token always log in.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from cert_desk import equivalents, jsonout
from cert_desk import errors as E
from cert_desk.models import CsrResult, DeleteResult, DoctorReport, GeneratedKey, ImportResult, ObjectInfo, TokenRef
from cert_desk.secrets import Secret, read_pin_file
from cert_desk.secrets.sources import pin_from_env

CA_PASSPHRASE_ENV = "CERT_DESK_CA_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
EXIT_OK = 0


def _hex_id(text: str) -> bytes:
    cleaned = text.replace(":", "").replace(" ", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        value = bytes.fromhex(cleaned)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex ID (such as 01 or a1b2c3)") from e
    if not value:
        raise argparse.ArgumentTypeError("an ID needs at least one byte")
    return value


def _lifecycle(ctx: Any) -> Any:
    from cert_desk.services.lifecycle import LifecycleService

    return LifecycleService(ctx.service)


def _token_and_login(ctx: Any) -> TokenRef:
    from cert_desk.cli import login

    ref: TokenRef = ctx.find_token()
    if ctx.service.logged_in_as(ref).result() is None:
        login(ctx, ref)
    return ref


def _wait(ctx: Any, future: Any, what: str) -> Any:
    from cert_desk.cli import _wait as wait

    return wait(future, what)


def _confirm(ctx: Any, question: str, option: str) -> bool:
    """Ask on a terminal; elsewhere the option must have been given."""
    if sys.stdin.isatty():
        ctx.flush()
        ctx.err.write(f"{question} Type 'yes' to go on: ")  # not stdout: it may be --json output
        ctx.err.flush()
        return sys.stdin.readline().strip().lower() == "yes"
    raise E.ConfirmationRequired(f"{question} Nothing was changed.", f"Add {option} to confirm.")


def _describe(o: ObjectInfo) -> str:
    kind = o.class_name.replace("_", " ")
    extra = f", {o.key_type} {o.curve or o.bits or ''}".rstrip() if o.key_type else ""
    if o.certificate is not None:
        extra = f", {o.certificate.subject_cn or o.certificate.subject}"
    return f"{kind} {o.label!r} (ID {o.id_hex or 'none'}{extra})"


# ------------------------------------------------------------------ keygen and delete


def cmd_keygen(ctx: Any) -> int:
    ref = _token_and_login(ctx)
    args = ctx.args
    if not ctx.json:
        slow = "; on-card RSA can take a minute" if args.type.lower().startswith("rsa") else ""
        ctx.note(f"Generating a {args.type} key pair on {ref.describe()}{slow}...")
    result: GeneratedKey = _wait(ctx, _lifecycle(ctx).generate(
        ref, args.type, label=args.label, obj_id=args.id, allow_duplicate=args.allow_duplicate), "generate a key pair")
    if ctx.json:
        ctx.emit_json(jsonout.generated_key(result))
        return EXIT_OK
    ctx.say(f"Generated {result.spec} key pair {result.label!r} on {ref.describe()} in {result.seconds:.1f} s.")
    ctx.say(f"  ID          : {result.id.hex()} ({result.id_source})")
    key = next((o for o in result.listing.objects if o.id == result.id and o.class_name == "private_key"), None)
    if key is not None:
        ctx.say(f"  URI         : {key.uri}")
        access = (("private", key.private), ("sensitive", key.sensitive), ("not extractable", key.extractable is False))
        ctx.say(f"  access      : {', '.join(word for word, flag in access if flag)}")
        ctx.say(f"  OpenSSL key : {'  '.join(key.openssl_key)}")
    ctx.say(f"  same with   : {equivalents.keygen(ref, result.spec, result.label, result.id)}")
    return EXIT_OK


def cmd_delete(ctx: Any) -> int:
    ref = _token_and_login(ctx)
    args = ctx.args
    kinds = frozenset([args.type]) if args.type else None
    svc = _lifecycle(ctx)
    targets: tuple[ObjectInfo, ...] = _wait(ctx, svc.delete_preview(ref, args.id, kinds), "find the objects")
    if not targets:
        raise E.InputError(f"Nothing with ID {args.id.hex()} on {ref.describe()}.",
                           "List the objects with 'cert-desk objects --login'.")
    listed = "; ".join(_describe(o) for o in targets)
    if not args.yes and not _confirm(ctx, f"Delete {len(targets)} object(s) from {ref.describe()}: {listed}?",
                                     "--yes"):
        raise E.CancelledError("Nothing was deleted.")
    result: DeleteResult = _wait(ctx, svc.delete(ref, args.id, kinds, expected=frozenset(o.handle for o in targets)),
                                 "delete objects")
    if ctx.json:
        ctx.emit_json(jsonout.delete_result(result))
        return EXIT_OK
    for o in result.deleted:
        ctx.say(f"Deleted {_describe(o)}.")
    return EXIT_OK


# ------------------------------------------------------------------ CSR


def cmd_csr(ctx: Any) -> int:
    from cert_desk.x509.names import parse_san, parse_subject

    args = ctx.args
    if args.label is None and args.id is None:
        raise E.InputError("Name the key: --label LABEL or --id HEX.")
    parse_subject(args.subject)  # bad input fails before the PIN is asked for
    for s in args.san:
        parse_san(s)
    if args.out and os.path.exists(args.out) and not args.force:
        raise E.InputError(f"{args.out} exists; nothing was done.", "Choose another file name, or add --force.")
    ref = _token_and_login(ctx)
    result: CsrResult = _wait(ctx, _lifecycle(ctx).csr(ref, label=args.label, obj_id=args.id, subject=args.subject,
                                                       sans=tuple(args.san)), "make a certificate request")
    if args.out:
        _write_new(args.out, result.pem, force=args.force)
    if ctx.json:
        ctx.emit_json(jsonout.csr_result(result, args.out))
        return EXIT_OK
    if args.out:
        ctx.note(f"Wrote the request for {result.subject} (key {result.key_label!r}, ID {result.key_id.hex()}, "
                 f"signed on the token with {result.mechanism}) to {args.out}.")
    else:
        ctx.out.write(result.pem.decode("ascii"))
    return EXIT_OK


def _write_new(path: str, data: bytes, *, force: bool = False, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically; an existing file is kept unless ``force``."""
    if os.path.exists(path) and not force:
        raise E.InputError(f"{path} exists; nothing was written.", "Choose another file name, or add --force.")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise E.InputError(f"Cannot write {path}: {e.strerror}.") from e


# ------------------------------------------------------------------ import and doctor


def cmd_import(ctx: Any) -> int:
    from cert_desk.x509.bundle import read_certificate_file

    args = ctx.args
    bundle = read_certificate_file(args.input)  # refused before any PIN is asked for
    ref = _token_and_login(ctx)
    svc = _lifecycle(ctx)

    def run(allow_expired: bool) -> ImportResult:
        result: ImportResult = _wait(ctx, svc.import_certificates(
            ref, bundle.certificates, label=args.label, with_chain=args.with_chain,
            allow_expired=allow_expired), "import certificates")
        return result

    try:
        result = run(args.allow_expired)
    except E.ConfirmationRequired as err:
        if args.allow_expired or not sys.stdin.isatty() or not _confirm(ctx, err.message, "--allow-expired"):
            raise
        result = run(True)
    if ctx.json:
        ctx.emit_json(jsonout.import_result(result))
        return EXIT_OK
    for o in result.written:
        ctx.say(f"Wrote {_describe(o)} on {ref.describe()}.")
    for p in result.already_present:
        ctx.say(f"Nothing written: {p}")
    for n in result.notes:
        ctx.say(f"Note: {n}")
    return EXIT_OK


def cmd_doctor(ctx: Any) -> int:
    ref = _token_and_login(ctx)
    report: DoctorReport = _wait(ctx, _lifecycle(ctx).doctor(ref, fix=ctx.args.fix), "check the pairing")
    # exit 1 while an error remains (a certificate a browser will not pair), as 'verify' does for a bad one
    failed = 1 if any(f.severity == "error" for f in report.findings) else EXIT_OK
    if ctx.json:
        ctx.emit_json(jsonout.doctor_report(report))
        return failed
    for line in report.fixed:
        ctx.say(f"Fixed: {line}")
    if not report.findings:
        ctx.say(f"Every key and certificate on {ref.describe()} pairs up.")
    for f in report.findings:
        ctx.say(f"{f.severity}: {f.message}")
        if f.fix and not ctx.args.fix:
            ctx.say(f"  fix ({'--fix' if f.new_id is not None else 'by hand'}): {f.fix}")
    return failed


# ------------------------------------------------------------------ verify


def cmd_verify(ctx: Any) -> int:
    from cryptography.hazmat.primitives import serialization

    from cert_desk.x509.bundle import read_certificate_file
    from cert_desk.x509.verify import verify_certificate

    args = ctx.args
    leaf_file = read_certificate_file(args.file)
    leaf, *rest = leaf_file.certificates
    cas = [c for f in args.ca for c in read_certificate_file(f).certificates]
    inter = [*rest, *(c for f in args.untrusted for c in read_certificate_file(f).certificates)]
    token_spki: bytes | None = None
    check_key = False
    if args.token or args.serial or args.slot is not None or getattr(args, "demo", False):
        check_key = True
        ref = ctx.find_token()
        if args.login:
            _token_and_login(ctx)
        listing = _wait(ctx, ctx.service.list_objects(ref), "list the objects")
        spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        token_spki = spki if _token_has_key(listing, spki) else None
    report = verify_certificate(leaf, cas, inter, purpose=args.purpose, token_spki=token_spki,
                                check_token_key=check_key)
    if ctx.json:
        ctx.emit_json(jsonout.verify_report(report, args.file))
        return EXIT_OK if report.ok else 1
    ctx.say(f"{args.file}: {report.subject} ({report.purpose} certificate)")
    if report.chain_checked and report.chain:
        ctx.say("  chain      : " + "  ->  ".join(report.chain))
    elif not report.chain_checked:
        ctx.say("  chain      : not checked (give the CA with --ca FILE)")
    for f in report.findings:
        ctx.say(f"  {f.severity:<8}: {f.message}")
        if f.hint:
            ctx.say(f"  {'':<8}  {f.hint}")
    ctx.say("Verdict: " + ("OK" if report.ok else "NOT OK"))
    return EXIT_OK if report.ok else 1


def _token_has_key(listing: Any, spki: bytes) -> bool:
    """A key with this public key is on the token (a private key; without login, a public key)."""
    from cert_desk.x509.keys import spki_sha256

    digest = spki_sha256(spki)
    return any(o.class_name in ("public_key", "private_key") and o.public_key_sha256 == digest
               for o in listing.objects)


# ------------------------------------------------------------------ local CA


def _passphrase(ctx: Any, *, what: str, new: bool = False) -> Callable[[], bytes | None]:
    """A passphrase source: --passphrase-file, $CERT_DESK_CA_PASSPHRASE, or the terminal (asked only when needed)."""
    args = ctx.args

    def get() -> bytes | None:
        secret: Secret | None = None
        if getattr(args, "passphrase_file", None):
            secret = read_pin_file(args.passphrase_file)
        else:
            secret = pin_from_env(CA_PASSPHRASE_ENV)
        if secret is None and sys.stdin.isatty():
            ctx.flush()
            value = getpass.getpass(f"Passphrase for {what}: ")
            if new and getpass.getpass("The same passphrase again: ") != value:
                raise E.InputError("The two passphrases differ; nothing was written.")
            secret = Secret(value, "prompt") if value else None
        if secret is None:
            raise E.InputError(f"{what} needs a passphrase.",
                               f"Give it with --passphrase-file FILE or ${CA_PASSPHRASE_ENV}.")
        return secret.reveal().encode("utf-8")

    return get


def cmd_ca_init(ctx: Any) -> int:
    from cert_desk.x509.ca import init_ca
    from cert_desk.x509.names import parse_subject

    args = ctx.args
    subject = parse_subject(args.subject)
    passphrase = None if args.no_passphrase else _passphrase(ctx, what="the new CA key", new=True)()
    paths = init_ca(args.dir, subject, key_type=args.key_type, days=args.days, passphrase=passphrase)
    if ctx.json:
        ctx.emit_json({"directory": paths.directory, "certificate": paths.cert, "key": paths.key,
                       "encrypted": passphrase is not None})
        return EXIT_OK
    ctx.say(f"Created the CA {args.subject} in {paths.directory}:")
    ctx.say(f"  certificate : {paths.cert}")
    ctx.say(f"  key         : {paths.key} ({'encrypted' if passphrase else 'NOT encrypted'}, mode 0600)")
    return EXIT_OK


def cmd_ca_sign(ctx: Any) -> int:
    from cryptography.hazmat.primitives import serialization

    from cert_desk.x509.bundle import read_csr_file
    from cert_desk.x509.ca import load_ca, parse_not_after, sign_csr
    from cert_desk.x509.names import subject_text

    args = ctx.args
    csr = read_csr_file(args.input)
    not_after = parse_not_after(args.not_after) if args.not_after else None
    ca = load_ca(args.ca_cert, args.ca_key, _passphrase(ctx, what=os.path.basename(args.ca_key)))
    cert = sign_csr(ca, csr, profile=args.profile, days=args.days, not_after=not_after)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if args.out:
        _write_new(args.out, pem, force=args.force)
    if ctx.json:
        ctx.emit_json({"subject": cert.subject.rfc4514_string(), "serial": format(cert.serial_number, "x"),
                       "not_after": cert.not_valid_after_utc.isoformat(), "profile": args.profile,
                       "out": args.out, "pem": pem.decode("ascii")})
        return EXIT_OK
    if args.out:
        ctx.note(f"Signed {subject_text(cert.subject)} ({args.profile} certificate, valid until "
                 f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC); wrote {args.out}.")
    else:
        ctx.out.write(pem.decode("ascii"))
    return EXIT_OK


# ------------------------------------------------------------------ OpenSSL


def cmd_openssl_config(ctx: Any) -> int:
    from cert_desk.pkcs11.lifecycle import find_private_key
    from cert_desk.pkcs11.openssl_config import OpensslKeyRef, engine_setup, provider_setup, write_config

    args = ctx.args
    if args.label is None and args.id is None:
        raise E.InputError("Name the key: --label LABEL or --id HEX.")
    ref = _token_and_login(ctx)
    listing = _wait(ctx, ctx.service.list_objects(ref), "list the objects")
    key = find_private_key(listing, label=args.label, obj_id=args.id)
    has_cert = bool(key.id) and any(o.class_name == "certificate" and o.id == key.id for o in listing.objects)
    key_ref = OpensslKeyRef(module=ref.module, token_label=ref.label, token_serial=ref.serial, slot_id=ref.slot_id,
                            key_label=key.label, key_id=key.id, uri=key.uri, has_certificate=has_cert)
    conf_path = os.path.abspath(args.out)
    pin_file = os.path.abspath(args.pin_file_ref) if args.pin_file_ref else None
    setup = (provider_setup if args.provider else engine_setup)(key_ref, pin_file=pin_file, conf_path=conf_path)
    write_config(setup, conf_path)
    if ctx.json:
        ctx.emit_json({"kind": setup.kind, "config": conf_path, "key": setup.key_argument,
                       "commands": [{"what": w, "command": c} for w, c in setup.commands], "notes": list(setup.notes)})
        return EXIT_OK
    ctx.say(f"Wrote {conf_path} ({setup.kind}). Use it through the environment, not with -config:")
    for what, command in setup.commands:
        ctx.say(f"  # {what}")
        ctx.say(f"  {command}")
    for n in setup.notes:
        ctx.say(f"Note: {n}")
    return EXIT_OK


# ------------------------------------------------------------------ parser


def add_commands(sub: Any, common: Callable[..., None], token_options: Callable[[argparse.ArgumentParser], None],
                 pin_options: Callable[[argparse.ArgumentParser], None]) -> None:
    def login_options(sp: argparse.ArgumentParser) -> None:
        pin_options(sp)  # --login is implied for these commands; kept for symmetry with 'objects'

    sp = sub.add_parser("keygen", help="generate a key pair on the token, like pkcs11-tool --keypairgen")
    common(sp)
    token_options(sp)
    login_options(sp)
    sp.add_argument("--type", required=True, metavar="TYPE",
                    help="rsa:2048, rsa:3072, rsa:4096, ec:prime256v1, ec:secp384r1 or ec:secp521r1")
    sp.add_argument("--label", required=True, help="the key's label (the certificate will carry it too)")
    sp.add_argument("--id", type=_hex_id, metavar="HEX",
                    help="CKA_ID in hex (default: SHA-1 of the public key, as pkcs11-tool makes it)")
    sp.add_argument("--allow-duplicate", action="store_true", help="go on when the label or ID is already in use")
    sp.set_defaults(func=cmd_keygen)

    sp = sub.add_parser("delete", help="delete the objects with an ID (key pair, certificate)")
    common(sp)
    token_options(sp)
    login_options(sp)
    sp.add_argument("--id", type=_hex_id, required=True, metavar="HEX", help="the CKA_ID of the objects to delete")
    sp.add_argument("--type", choices=("privkey", "pubkey", "cert"), help="only objects of this kind")
    sp.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal)")
    sp.set_defaults(func=cmd_delete)

    sp = sub.add_parser("csr", help="make a certificate request signed by an on-token key")
    common(sp)
    token_options(sp)
    login_options(sp)
    sp.add_argument("--label", help="the key's label")
    sp.add_argument("--id", type=_hex_id, metavar="HEX", help="the key's CKA_ID")
    sp.add_argument("--subject", required=True,
                    help='"/C=GB/O=HW/CN=name" (openssl -subj) or "CN=name,O=HW,C=GB" (RFC 4514)')
    sp.add_argument("--san", action="append", default=[], metavar="NAME",
                    help="subject alternative name: DNS:host, email:a@b, IP:1.2.3.4, URI:... (repeatable)")
    sp.add_argument("--out", metavar="FILE", help="write the PEM request here (default: standard output)")
    sp.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sp.set_defaults(func=cmd_csr)

    sp = sub.add_parser("import", help="write a certificate to the token with its key's ID and label")
    common(sp)
    token_options(sp)
    login_options(sp)
    sp.add_argument("--in", dest="input", required=True, metavar="FILE",
                    help="PEM (one or more certificates), DER, or PKCS#7 (.p7b/.p7c)")
    sp.add_argument("--label", help="the certificate's label (default: its key's label)")
    sp.add_argument("--with-chain", action="store_true", help="also write the CA certificates in the file")
    sp.add_argument("--allow-expired", action="store_true", help="import an expired certificate")
    sp.set_defaults(func=cmd_import)

    sp = sub.add_parser("doctor", help="find certificates and keys that do not pair up (and fix them)")
    common(sp)
    token_options(sp)
    login_options(sp)
    sp.add_argument("--fix", action="store_true", help="give mis-paired certificates their key's ID and label")
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("verify", help="verify a certificate like openssl verify -x509_strict, in plain words")
    common(sp)
    sp.add_argument("file", metavar="FILE", help="the certificate (the first one in the file; the rest are "
                                                 "taken as intermediates)")
    sp.add_argument("--ca", action="append", default=[], metavar="FILE", help="a trusted CA certificate file")
    sp.add_argument("--untrusted", action="append", default=[], metavar="FILE",
                    help="intermediate CA certificates")
    sp.add_argument("--purpose", choices=("auto", "client", "server"), default="auto")
    token_options(sp)
    g = sp.add_argument_group("login")
    g.add_argument("--login", action="store_true", help="log in, to compare with private keys too")
    g.add_argument("--pin-file", metavar="FILE", help="read the PIN from the first line of FILE")
    sp.set_defaults(func=cmd_verify)

    ca = sub.add_parser("ca", help="a small local CA: init, sign")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="COMMAND", required=True)
    sp = ca_sub.add_parser("init", help="create a CA certificate and key in a directory")
    common(sp)
    sp.add_argument("--dir", required=True, help="the directory (created; must not hold a CA yet)")
    sp.add_argument("--subject", required=True, help='"/O=Example/CN=Example CA"')
    sp.add_argument("--key-type", default="ec:prime256v1", help="ec:prime256v1 (default), ec:secp384r1, rsa:3072 ...")
    sp.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    sp.add_argument("--passphrase-file", metavar="FILE", help=f"the key's passphrase (else ${CA_PASSPHRASE_ENV} "
                                                              "or a prompt)")
    sp.add_argument("--no-passphrase", action="store_true", help="store the key unencrypted (tests only)")
    sp.set_defaults(func=cmd_ca_init)
    sp = ca_sub.add_parser("sign", help="sign a certificate request, like openssl ca")
    common(sp)
    sp.add_argument("--ca-cert", required=True, metavar="FILE")
    sp.add_argument("--ca-key", required=True, metavar="FILE")
    sp.add_argument("--in", dest="input", required=True, metavar="CSR")
    sp.add_argument("--out", metavar="PEM", help="default: standard output")
    sp.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--not-after", metavar="TIME", help="end of validity: 20240130164600Z or 2030-12-31")
    when.add_argument("--days", type=int, help="validity in days (default 365)")
    sp.add_argument("--profile", choices=("client", "server"), default="client")
    sp.add_argument("--passphrase-file", metavar="FILE", help=f"the CA key's passphrase (else ${CA_PASSPHRASE_ENV} "
                                                              "or a prompt)")
    sp.set_defaults(func=cmd_ca_sign)

    sp = sub.add_parser("openssl-config", help="write an OPENSSL_CONF that lets openssl use an on-token key")
    common(sp)
    token_options(sp)
    login_options(sp)
    sp.add_argument("--label", help="the key's label")
    sp.add_argument("--id", type=_hex_id, metavar="HEX", help="the key's CKA_ID")
    sp.add_argument("--out", required=True, metavar="FILE", help="the configuration file to write")
    sp.add_argument("--provider", action="store_true", help="for pkcs11-provider (OpenSSL 3) instead of the "
                                                            "libp11 engine")
    sp.add_argument("--pin-file-ref", metavar="FILE",
                    help="a file holding the PIN, referenced from the configuration (default: openssl prompts)")
    sp.set_defaults(func=cmd_openssl_config)

