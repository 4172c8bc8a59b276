"""The worker rules: one thread per module, nothing leaves it but frozen data, orderly shutdown."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cert_desk import errors as E
from cert_desk.models import TokenSelector
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.services.tokens import TokenService
from cert_desk.services.worker import ModuleWorker, WorkerPool, check_crossable
from tests.conftest import SoftHsm


def test_jobs_run_on_the_module_thread(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    seen: list[str] = []

    def job(m: LoadedModule) -> str:
        seen.append(threading.current_thread().name)
        return m.path

    futures = [service.run(softhsm.module, job, "probe") for _ in range(5)]
    assert {f.result() for f in futures} == {softhsm.module}
    assert set(seen) == {"pkcs11:libsofthsm2.so"}
    assert threading.current_thread().name not in seen


def test_two_paths_of_one_module_share_one_worker(softhsm: SoftHsm, service: TokenService) -> None:
    a = service.pool.worker("/usr/lib/softhsm/libsofthsm2.so")
    b = service.pool.worker(softhsm.module)
    assert a is b


def test_module_refuses_calls_from_another_thread(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    """A LoadedModule smuggled out of its worker cannot be used (the check is in the code, not a convention)."""
    smuggled: list[LoadedModule] = []

    def leak(m: LoadedModule) -> None:
        smuggled.append(m)

    service.run(softhsm.module, leak, "leak").result()
    m = smuggled[0]
    for call in (m.library_info, m.slot_reports, lambda: m.resolve(TokenSelector(label=token)),
                 lambda: m.token_info(0), lambda: m.ck, m.close_all):
        with pytest.raises(E.WrongThreadError):
            call()


def test_results_must_be_frozen(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    with pytest.raises(E.WorkerError, match="only frozen dataclasses"):
        service.run(softhsm.module, lambda m: m.slot(m.resolve(TokenSelector(label=token)).slot_id),
                    "leak a slot").result()
    with pytest.raises(E.WorkerError):
        service.run(softhsm.module, lambda m: [1, 2], "a list").result()

    @dataclass
    class Mutable:
        x: int

    with pytest.raises(E.WorkerError, match="not frozen"):
        service.run(softhsm.module, lambda m: Mutable(1), "mutable").result()
    assert service.run(softhsm.module, lambda m: (1, b"x", "y", None), "fine").result() == (1, b"x", "y", None)


def test_check_crossable_walks_nested_values() -> None:
    @dataclass(frozen=True)
    class Inner:
        items: tuple[object, ...]

    check_crossable(Inner((1, "a", Inner(()))))
    with pytest.raises(E.WorkerError):
        check_crossable(Inner((1, {"a": 1})))


def test_errors_come_back_as_outcomes(softhsm: SoftHsm, service: TokenService) -> None:
    def boom(m: LoadedModule) -> None:
        raise ValueError("a bug")

    with pytest.raises(E.InternalError, match="a bug"):
        service.run(softhsm.module, boom, "explode").result()
    # the worker survives a failed job
    assert service.run(softhsm.module, lambda m: 42, "after").result() == 42


def test_unknown_module_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    not_a_module = tmp_path / "text.so"
    not_a_module.write_text("hello")
    pool = WorkerPool()
    try:
        with pytest.raises(E.ModuleNotFoundError_):
            pool.submit("/nonexistent/libnothing.so", LoadedModule.library_info, "load").result()
        with pytest.raises(E.NotAPkcs11ModuleError):
            pool.submit(str(not_a_module), LoadedModule.library_info, "load").result()
    finally:
        assert pool.shutdown(5)


def test_shutdown_does_not_wait_forever_on_a_hung_job(softhsm: SoftHsm) -> None:
    worker = ModuleWorker(softhsm.module)
    release = threading.Event()
    started = threading.Event()

    def hang(m: LoadedModule) -> int:
        started.set()
        release.wait(30)
        return 1

    fut = worker.submit(hang, "hang")
    assert started.wait(10)
    assert worker.current is not None and worker.current.description == "hang"
    t0 = time.monotonic()
    assert worker.shutdown(timeout=0.5) is False
    assert time.monotonic() - t0 < 3
    late = worker.submit(lambda m: 2, "late")
    with pytest.raises(E.WorkerError):
        late.result(1)
    release.set()
    assert fut.result(10) == 1
    worker.thread.join(10)
    assert not worker.thread.is_alive()


def test_check_crossable_accepts_declared_immutable_types_and_walks_the_rest() -> None:
    from cert_desk.models import ObjectListing, TokenRef
    from cert_desk.services.worker import _immutable_class

    assert _immutable_class(ObjectListing) and _immutable_class(TokenRef)

    @dataclass(frozen=True)
    class Loose:
        items: tuple[object, ...]

    assert not _immutable_class(Loose)
    long = (*range(8), [1], *range(8))  # 17 items, a list in the middle
    with pytest.raises(E.WorkerError):
        check_crossable(Loose(long))
    with pytest.raises(E.WorkerError):
        check_crossable(long)


def test_reload_reinitialises_on_the_same_thread(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    """A module is re-initialised in place, after its queued jobs: never two threads on one module."""
    names: list[str] = []

    def job(m: LoadedModule) -> int:
        names.append(threading.current_thread().name)
        return len(m.candidates(TokenSelector()))

    assert service.run(softhsm.module, job, "count").result() == 1
    softhsm.init_token("later")  # by another process: SoftHSM2 sees it only after C_Initialize
    assert service.run(softhsm.module, job, "count").result() == 1
    service.pool.reload(softhsm.module)
    assert service.run(softhsm.module, job, "count").result() == 2
    assert len(set(names)) == 1


def test_errors_leave_the_worker_without_their_frames(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    """A failed login's frames hold the PIN; the error that reaches the GUI or the CLI does not."""
    from cert_desk.secrets import Secret

    ref = service.find_token(TokenSelector(label=token), [softhsm.module])
    with pytest.raises(E.PinIncorrectError) as info:
        service.login(ref, Secret("917355", "test")).result()
    err = info.value
    seen = [err, err.__cause__, err.__context__]
    assert all(e is None or e.__traceback__ is None or e is err for e in seen[1:])
    # what pytest attached is the re-raise in this thread; the worker's frames are gone
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert not any("cert_desk" in f for f in frames), frames
