"""Read an NSS database's module list (``pkcs11.txt``) the way NSS itself reads it.

The file is blocks of ``key=value`` lines (``library=``, ``name=``, ``parameters=``, ``NSS=``)
separated by blank lines. What a browser loads is what NSS makes of the file, not what a
tidier parser would, so this module follows NSS's reader (``nssutil_ReadSecmodDB`` in
``lib/util/utilmod.c`` and the argument parser in ``lib/util/utilpars.c``) line for line, and
was checked against ``modutil -list`` of NSS 3.87:

- lines are read with a 2048-byte ``fgets`` buffer: a longer line is cut into 2047-byte pieces,
  each read as a line; a trailing ``\\r\\n``, ``\\n`` or ``\\r`` is removed;
- a NUL byte ends the line (NSS uses ``strlen``); bytes that are not UTF-8 are kept by NSS and
  shown here with U+FFFD;
- ``#`` at the start of a line makes it a comment; an empty line ends a block;
- a line that is not ``key=value`` is kept in the block (NSS's parser skips it later: the module
  still loads), keys are case-insensitive, and when a key repeats the **last** one wins;
- a value that starts with ``"`` is read up to the closing quote, with ``\\`` escapes;
- a module is NSS's internal one when ``NSS=`` has ``Flags=internal``; a block without
  ``library=`` that is not internal is listed, but NSS cannot load it ("Not loaded");
- **the end of the file**: a last block whose last line ends with a line break but has no
  blank line after it *is* loaded, but NSS drops it the next time it rewrites the file (any
  ``modutil -add``/``-delete``, or the browser's own changes). A last line without a line break
  makes NSS ignore the whole last block.

So the choice for damaged files is NSS's: lenient. Nothing is refused except a file larger than
:data:`MAX_PKCS11_TXT` (or one that cannot be read); every oddity is reported in words, naming
the line, in :attr:`Pkcs11Txt.warnings`, so a caller can warn before it changes the file.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cert_desk.errors import InputError
from cert_desk.nss.models import NssModule
from cert_desk.pkcs11.discovery import PROXY_NAMES

log = logging.getLogger(__name__)

MAX_PKCS11_TXT = 1024 * 1024
"""pkcs11.txt files larger than this (1 MiB; a real one is well under 10 KiB) are refused."""

FILE_NAME = "pkcs11.txt"
_FGETS = 2047  # NSS reads lines with fgets() into char[2048]
_MAX_WARNINGS = 20
_QUOTE_PAIRS = {"'": "'", '"': '"', "<": ">", "{": "}", "[": "]", "(": ")"}


@dataclass(frozen=True)
class Pkcs11Txt:
    """What NSS makes of one pkcs11.txt.

    Attributes:
        modules: The modules NSS reads, in file order (the internal module included).
        dropped: Modules written in the file that NSS ignores (a last block whose last line has
            no line break).
        at_risk: Modules NSS loads now but loses at its next rewrite of the file (a last block
            without the blank line after it). They are also in ``modules``.
        warnings: Everything odd, in words, each naming its line.
    """

    modules: tuple[NssModule, ...]
    dropped: tuple[NssModule, ...] = ()
    at_risk: tuple[NssModule, ...] = ()
    warnings: tuple[str, ...] = ()


def parse(text: str, where: str = "") -> tuple[NssModule, ...]:
    """The modules NSS reads from ``text`` (see :func:`scan` for the warnings)."""
    return _logged(scan(text, where)).modules


def read(db_dir: str) -> tuple[NssModule, ...]:
    """The modules of the database in ``db_dir``; ``()`` when it has no pkcs11.txt.

    Raises:
        InputError: The file is larger than :data:`MAX_PKCS11_TXT` or cannot be read.
    """
    return _logged(read_scan(db_dir)).modules


def read_scan(db_dir: str) -> Pkcs11Txt:
    """:func:`scan` of the database's pkcs11.txt (an empty result when there is none).

    Raises:
        InputError: The file is larger than :data:`MAX_PKCS11_TXT` or cannot be read.
    """
    path = os.path.join(db_dir, FILE_NAME)
    try:
        data = read_capped(path, MAX_PKCS11_TXT)
    except OSError as e:
        raise InputError(f"Cannot read {path}: {e.strerror}.",
                         "Check that it is a file and its owner and permissions allow reading it.") from e
    if data is None:
        return Pkcs11Txt(())
    if len(data) > MAX_PKCS11_TXT:
        raise InputError(
            f"{path} is larger than {MAX_PKCS11_TXT // 1024} KiB; a module list is a few KiB, so this is "
            "not one cert-desk will read or change.",
            "Look at the file: something else has been written into it.")
    return scan(data, path)


def read_capped(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (so a caller sees it is larger);
    None when there is no such file.

    Raises:
        OSError: It cannot be read, or is not a regular file (a FIFO in its place must not hang
            a scan: it is opened non-blocking and refused).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def scan(data: str | bytes, where: str = "") -> Pkcs11Txt:
    """Read a pkcs11.txt's content as NSS does, with everything odd in ``warnings``.

    Args:
        data: The file's content (``str`` is encoded as UTF-8 first).
        where: The file's name, used in the warnings.
    """
    raw = _encode(data) if isinstance(data, str) else data
    label = where or FILE_NAME
    warnings: list[str] = []
    modules: list[NssModule] = []
    block: list[tuple[int, str]] = []
    ended_without_newline = False
    for number, piece, at_eof in _fgets(raw):
        line = _text(piece.split(b"\0", 1)[0], number, label, warnings)
        if b"\0" in piece:
            warnings.append(f"{label}, line {number}: a NUL byte; NSS reads the line only up to it.")
        line = _chomp(line)
        if line:
            if not line.startswith("#"):
                block.append((number, line))
            if at_eof:  # NSS's loop ends on feof() before it finishes the block
                ended_without_newline = True
                break
            continue
        if block:
            modules.append(_module(block, label, warnings))
            block = []
    dropped: tuple[NssModule, ...] = ()
    at_risk: tuple[NssModule, ...] = ()
    if block:
        last = _module(block, label, warnings)
        first_line = block[0][0]
        if ended_without_newline:
            dropped = (last,)
            warnings.append(
                f"{label}, line {first_line}: the last block ({_words(last)}) has no line break at its end; "
                "NSS ignores it.")
        else:
            modules.append(last)
            at_risk = (last,)
            warnings.append(
                f"{label}, line {first_line}: the last block ({_words(last)}) has no blank line after it; NSS "
                "loads it but drops it the next time it rewrites the file.")
    internals = [m for m in modules if m.internal]
    if len(internals) > 1:
        warnings.append(f"{label}: {len(internals)} blocks are marked Flags=internal; NSS uses only one of them.")
    if len(warnings) > _MAX_WARNINGS:  # a binary file would give one per line
        warnings[_MAX_WARNINGS:] = [f"{label}: {len(warnings) - _MAX_WARNINGS} more problems like these."]
    return Pkcs11Txt(tuple(modules), dropped, at_risk, tuple(warnings))


def is_p11_kit_proxy(library: str) -> bool:
    """True for p11-kit's proxy module, which loads every module registered with p11-kit.

    ``p11-kit-trust.so`` (the system's CA store) and ``p11-kit-client.so`` are not the proxy.
    The proxy is installed as ``p11-kit-proxy.so`` and is ``libp11-kit.so.0`` itself.
    """
    if not library:
        return False
    names = {os.path.basename(library)}
    if os.path.isabs(library):
        names.add(os.path.basename(os.path.realpath(library)))
    return any(name.startswith(PROXY_NAMES) for name in names)


def find(modules: Iterable[NssModule], realpath: str) -> list[NssModule]:
    """The entries whose library is the module at ``realpath``.

    Compared by real path: Debian installs OpenSC's module under two paths, and either may be
    the one registered.
    """
    real = os.path.realpath(realpath) if realpath else ""
    return [m for m in modules if real and m.realpath == real]


def conflicts(modules: Sequence[NssModule], realpath: str, *, known_to_p11kit: bool = True) -> list[str]:
    """What in the database clashes with the module at ``realpath``, in words.

    ``known_to_p11kit``: the module is in p11-kit's registry, so the proxy loads it too. A
    database that has the proxy and no direct entry has no conflict: the token shows once,
    through the proxy (see :func:`through_proxy`).

    - the module registered more than once (under two names, or two paths to one library):
      NSS initialises a library only once, so every entry after the first is "Not loaded", and
      ``modutil -add`` of the same library under another path fails with exit code 22;
    - p11-kit's proxy, which shows the tokens of every module registered with p11-kit, so the
      module's token appears a second time when p11-kit knows the module too (Debian registers
      OpenSC with p11-kit).
    """
    if not realpath:
        return []
    out: list[str] = []
    same = find(modules, realpath)
    if len(same) > 1:
        entries = ", ".join(f"{m.name!r} ({m.library})" for m in same)
        out.append(
            f"{realpath} is registered {len(same)} times: {entries}. NSS initialises a library once, so the "
            "entries after the first do not load ('Not loaded' in modutil -list). Keep one.")
    if same and known_to_p11kit:
        out.extend(
            f"{m.name!r} ({m.library}) is p11-kit's proxy: it loads every module registered with p11-kit, "
            f"{os.path.basename(realpath)} too, so its token shows a second time."
            for m in modules if m.p11_kit_proxy and m.realpath != os.path.realpath(realpath))
    return out


def through_proxy(modules: Sequence[NssModule], realpath: str, *, known_to_p11kit: bool) -> NssModule | None:
    """The p11-kit proxy entry that already brings the module at ``realpath`` into the database
    (the module is in p11-kit's registry), or None. Adding the module directly then fails in
    modutil (exit 22, "Unknown PKCS #11 error") and would show the token twice."""
    if not known_to_p11kit or not realpath:
        return None
    return next((m for m in modules if m.p11_kit_proxy and m.realpath != os.path.realpath(realpath)), None)


# ------------------------------------------------------------------- internals


def _logged(result: Pkcs11Txt) -> Pkcs11Txt:
    for warning in result.warnings:
        log.info("%s", warning)
    return result


def _encode(text: str) -> bytes:
    """The file's bytes again: text read with ``surrogateescape`` gets its undecodable bytes back."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates
        return text.encode("utf-8", "surrogatepass")


def _fgets(raw: bytes) -> Iterator[tuple[int, bytes, bool]]:
    """NSS's ``fgets(line, 2048, fd)`` loop: (line number, piece, EOF hit while reading it).

    ``at_eof`` is true for a last piece without a line break shorter than the buffer: only then
    does NSS's ``feof()`` end the loop before the block is finished.
    """
    pos, number, size = 0, 1, len(raw)
    while pos < size:
        newline = raw.find(b"\n", pos, pos + _FGETS)
        end = newline + 1 if newline >= 0 else min(pos + _FGETS, size)
        piece = raw[pos:end]
        pos = end
        yield number, piece, newline < 0 and end >= size and len(piece) < _FGETS
        if newline >= 0:
            number += 1


def _chomp(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _text(piece: bytes, number: int, label: str, warnings: list[str]) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        warnings.append(f"{label}, line {number}: not UTF-8; NSS reads the bytes as they are.")
        return piece.decode("utf-8", "replace")


def _module(block: list[tuple[int, str]], label: str, warnings: list[str]) -> NssModule:
    """One block as NSS reads it: the lines joined into a module spec, then parsed."""
    parts: list[str] = []
    for number, line in block:
        key, sep, value = line.partition("=")
        if not sep:
            warnings.append(f"{label}, line {number}: {line[:60]!r} is not key=value; NSS skips it.")
            parts.append(line)
        elif not value or value.startswith('"'):
            parts.append(line)
        elif key[:10].lower() == "parameters":
            continue  # NSS moves the module's parameters to the end; they name nothing we need
        else:
            parts.append(key + "=" + _quote(value))
    spec = _parse_spec(" ".join(parts))
    library = spec.get("library", "")
    internal = _has_flag(spec.get("nss", ""), "flags", "internal")
    if not library and not internal:
        warnings.append(f"{label}, line {block[0][0]}: a block without library= that is not NSS's internal "
                        "module; NSS lists it but cannot load it.")
    return NssModule(
        name=spec.get("name", ""),
        library=library,
        realpath=_resolve(library),
        internal=internal,
        p11_kit_proxy=is_p11_kit_proxy(library),
    )


def _quote(value: str) -> str:
    """NSSUTIL_Quote(value, '"')."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _find_end(s: str, i: int) -> int:
    """NSSUTIL_ArgFindEnd: the end of the value starting at ``s[i]``."""
    end_char = " "
    if i < len(s) and s[i] in _QUOTE_PAIRS:
        end_char = _QUOTE_PAIRS[s[i]]
        i += 1
    escaped = False
    while i < len(s):
        c = s[i]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif (end_char == " " and c.isspace()) or c == end_char:
            break
        i += 1
    return i


def _fetch_value(s: str, i: int) -> tuple[str, int]:
    """NSSUTIL_ArgFetchValue: (the unquoted, unescaped value at ``s[i]``, the index after it)."""
    end = _find_end(s, i)
    if end == i:
        return "", i
    start = i + 1 if s[i] in _QUOTE_PAIRS else i
    out: list[str] = []
    escaped = False
    for c in s[start:end]:
        if c == "\\" and not escaped:
            escaped = True
            continue
        escaped = False
        out.append(c)
    return "".join(out), (end + 1 if end < len(s) else end)


def _skip_parameter(s: str, i: int) -> int:
    """NSSUTIL_ArgSkipParameter."""
    while i < len(s):
        if s[i] == "=":
            i += 1
            break
        if s[i].isspace():
            return i
        i += 1
    end = _find_end(s, i)
    return end + 1 if end < len(s) else end


def _parse_spec(spec: str) -> dict[str, str]:
    """NSSUTIL_ArgParseModuleSpec: ``key=value`` pairs, keys lower-cased, the last one winning."""
    out: dict[str, str] = {}
    i = 0
    while i < len(spec):
        while i < len(spec) and spec[i].isspace():
            i += 1
        if i >= len(spec):
            break
        for key in ("library", "name", "parameters", "nss"):
            if spec[i:i + len(key) + 1].lower() == key + "=":
                out[key], i = _fetch_value(spec, i + len(key) + 1)
                break
        else:
            i = _skip_parameter(spec, i)
    return out


def _has_flag(params: str, label: str, flag: str) -> bool:
    """NSSUTIL_ArgHasFlag: ``flag`` is one of the comma-separated items of ``label=``."""
    i = 0
    while i < len(params):
        while i < len(params) and params[i].isspace():
            i += 1
        if params[i:i + len(label) + 1].lower() == label + "=":
            value, _ = _fetch_value(params, i + len(label) + 1)
            return any(item.lower().startswith(flag) for item in value.split(","))
        i = _skip_parameter(params, i)
    return False


def _library_dirs() -> tuple[str, ...]:
    arch = str(sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
    return (f"/usr/lib/{arch}", f"/lib/{arch}", "/usr/lib64", "/lib64", "/usr/lib", "/lib")


def resolve_library(library: str) -> str:
    """A ``library=`` value as NSS (the dynamic loader) finds it: its real path, or ""."""
    return _resolve(library)


def _resolve(library: str) -> str:
    """The library's real path, or "" when it cannot be found.

    A bare file name is looked up the way the dynamic loader would find it in the system's
    library directories (the browser's own LD_LIBRARY_PATH is unknown here); a relative path
    with a directory depends on the browser's working directory and is not resolved.
    """
    if not library:
        return ""
    if os.path.isabs(library):
        candidates: tuple[str, ...] = (library,)
    elif "/" in library:
        return ""
    else:
        candidates = tuple(os.path.join(d, library) for d in _library_dirs())
    for path in candidates:
        if os.path.isfile(path):
            return os.path.realpath(path)
    return ""


def _words(module: NssModule) -> str:
    if module.internal:
        return "NSS's internal module"
    return f"{module.name!r}, library={module.library}" if module.library else repr(module.name)
