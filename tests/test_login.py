"""Login, PIN checks and session hygiene against a real SoftHSM2 token.

Sessions are counted by asking the module itself (C_GetSessionInfo on every handle
SoftHSM2 could have given out), on the module's worker thread.
"""

from __future__ import annotations

import pytest

from cert_desk import errors as E
from cert_desk.models import TokenRef, TokenSelector
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.module import LoadedModule, pin_states
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService
from tests.conftest import SO_PIN, USER_PIN, SoftHsm


def open_sessions(service: TokenService, ref: TokenRef) -> int:
    def probe(m: LoadedModule) -> int:
        n = 0
        for handle in range(1, 512):
            info = m.ck.session_info(handle)
            if info is not None and info[0] == ref.slot_id:
                n += 1
        return n

    return service.run(ref.module, probe, "count sessions").result()


@pytest.fixture
def ref(softhsm: SoftHsm, token: str, service: TokenService) -> TokenRef:
    return service.find_token(TokenSelector(label=token), [softhsm.module])


def test_wrong_pins_leave_no_session(service: TokenService, ref: TokenRef) -> None:
    assert open_sessions(service, ref) == 0
    for _ in range(5):
        with pytest.raises(E.PinIncorrectError) as info:
            service.login(ref, Secret("000000", "test")).result()
        assert "000000" not in str(info.value)
    # one session at most: the one cert-desk keeps for this token, and none per attempt
    assert open_sessions(service, ref) <= 1
    service.close_token(ref).result()
    assert open_sessions(service, ref) == 0


def test_wrong_pin_reports_what_the_token_says(service: TokenService, ref: TokenRef) -> None:
    with pytest.raises(E.PinIncorrectError) as info:
        service.login(ref, Secret("999999", "test")).result()
    err = info.value
    # SoftHSM2 raises USER_PIN_COUNT_LOW after a wrong PIN: the error says so (read after the attempt)
    assert err.state in (E.PinState.COUNT_LOW, E.PinState.OK)
    fresh = service.token_info(ref).result()
    assert fresh.user_pin == err.state
    assert err.hint


def test_login_then_logout(service: TokenService, ref: TokenRef) -> None:
    result = service.login(ref, Secret(USER_PIN, "test")).result()
    assert result.logged_in_as == "user"
    listing = service.list_objects(ref).result()
    assert listing.logged_in
    # logging in twice is harmless
    assert service.login(ref, Secret(USER_PIN, "test")).result().logged_in_as == "user"
    assert service.logout(ref).result().logged_in_as is None
    assert open_sessions(service, ref) == 0
    assert not service.list_objects(ref).result().logged_in


def test_so_login(service: TokenService, ref: TokenRef) -> None:
    assert service.login(ref, Secret(SO_PIN, "test"), so=True).result().logged_in_as == "so"
    service.logout(ref).result()
    with pytest.raises(E.PinIncorrectError) as info:
        service.login(ref, Secret("0000000000", "test"), so=True).result()
    assert info.value.so and "SO PIN" in info.value.message


@pytest.mark.parametrize("pin", ["123", "x" * 300])
def test_pin_length_is_checked_before_the_token_sees_it(service: TokenService, ref: TokenRef, pin: str) -> None:
    before = service.token_info(ref).result()
    with pytest.raises(E.PinPolicyError) as info:
        service.login(ref, Secret(pin, "test")).result()
    assert "no try was used" in info.value.hint
    after = service.token_info(ref).result()
    # no attempt reached the token: its PIN flags did not change (SoftHSM2 sets COUNT_LOW on a wrong PIN)
    assert after.flags == before.flags
    assert open_sessions(service, ref) == 0


def test_pin_pad_without_pin_is_refused_on_a_token_without_pin_pad(service: TokenService, ref: TokenRef) -> None:
    with pytest.raises(E.PinRequiredError):
        service.login(ref, None).result()


def test_token_info_is_a_fresh_snapshot(service: TokenService, ref: TokenRef) -> None:
    first = service.token_info(ref).result()
    assert first.user_pin is E.PinState.OK
    with pytest.raises(E.PinIncorrectError):
        service.login(ref, Secret("111111", "test")).result()
    assert service.token_info(ref).result().flags != first.flags


def test_pin_states_from_flags() -> None:
    init = C.CKF_TOKEN_INITIALIZED | C.CKF_USER_PIN_INITIALIZED
    assert pin_states(init) == (E.PinState.OK, E.PinState.OK)
    assert pin_states(init | C.CKF_USER_PIN_COUNT_LOW)[0] is E.PinState.COUNT_LOW
    assert pin_states(init | C.CKF_USER_PIN_COUNT_LOW | C.CKF_USER_PIN_FINAL_TRY)[0] is E.PinState.FINAL_TRY
    assert pin_states(init | C.CKF_USER_PIN_FINAL_TRY | C.CKF_USER_PIN_LOCKED)[0] is E.PinState.LOCKED
    assert pin_states(init | C.CKF_USER_PIN_TO_BE_CHANGED)[0] is E.PinState.TO_BE_CHANGED
    assert pin_states(init | C.CKF_SO_PIN_LOCKED)[1] is E.PinState.LOCKED
    assert pin_states(C.CKF_TOKEN_INITIALIZED)[0] is E.PinState.NOT_INITIALIZED
    # SoftHSM's free slot reports SO_PIN_LOCKED on an uninitialised token: not a locked PIN
    assert pin_states(C.CKF_SO_PIN_LOCKED | C.CKF_SO_PIN_TO_BE_CHANGED) == (
        E.PinState.NOT_INITIALIZED, E.PinState.NOT_INITIALIZED)


def test_secret_never_shows_its_value() -> None:
    s = Secret("246810", "test")
    assert "246810" not in repr(s) and "246810" not in str(s) and "246810" not in f"{s}"
    assert s.reveal() == "246810"
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_a_session_the_token_forgot_is_not_trusted(service: TokenService, ref: TokenRef) -> None:
    """Pull-and-reinsert closes every session on the token (simulated here by C_CloseAllSessions):
    cert-desk must not believe it is still logged in, nor reuse the dead session."""
    service.login(ref, Secret(USER_PIN, "test")).result()

    def pull_and_reinsert(m: LoadedModule) -> None:
        m.ck.close_all_sessions(ref.slot_id)

    service.run(ref.module, pull_and_reinsert, "simulate").result()
    with pytest.raises(E.PinIncorrectError):  # the wrong PIN reaches the token: no stale "logged in"
        service.login(ref, Secret("000000", "test")).result()
    listing = service.list_objects(ref).result()
    assert not listing.logged_in
