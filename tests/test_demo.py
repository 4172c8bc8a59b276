"""The embedded default: the SoftHSM2 demo token."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cert_desk import demo
from cert_desk import errors as E
from cert_desk.models import TokenSelector
from cert_desk.services.tokens import TokenService
from tests.conftest import Cli, SoftHsm


def test_demo_is_created_once_and_complete(cli: Cli, softhsm: SoftHsm) -> None:
    first = cli("demo", "--json")
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["created"] is True and info["label"] == "cert-desk demo"
    d = Path(info["directory"])
    assert d == Path(os.environ["XDG_DATA_HOME"]) / "cert-desk" / "demo"
    assert Path(info["softhsm2_conf"]).read_text().startswith("# SoftHSM2 configuration of the cert-desk demo")
    for name in ("user-pin", "so-pin", "ca-key.pem"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    second = cli("demo", "--json")
    assert json.loads(second.stdout)["created"] is False
    text = cli("demo")
    assert "Found the demo token 'cert-desk demo'" in text.stdout and "123456" in text.stdout
    listing = cli("--demo", "objects", "--json")
    assert listing.returncode == 0, listing.stderr
    objs = json.loads(listing.stdout)
    assert sorted(o["class"] for o in objs) == ["certificate"] * 3 + ["public_key"] * 2
    rsa_cert = next(o for o in objs if o["class"] == "certificate" and o["id"] == "01")
    assert rsa_cert["pair"]["key_matches"] is True
    assert rsa_cert["extended_key_usage"] == ["clientAuth"] and "keyCertSign" not in rsa_cert["key_usage"]


def test_half_made_demo_token_is_made_again(softhsm: SoftHsm, service: TokenService) -> None:
    """A creation that stopped half way (no 'ready' marker) is redone, not taken as done."""
    demo.activate()
    service.pool.reload(softhsm.module)
    first = demo.ensure(service)
    assert first.created
    (Path(first.directory) / "ready").unlink()
    again = demo.ensure(service)
    assert again.created
    refs = [service.find_token(TokenSelector(label=demo.DEMO_LABEL), [softhsm.module])]
    assert len(refs) == 1  # re-initialised in place: still exactly one demo token
    listing = service.list_objects(refs[0]).result()
    assert len(listing.objects) == 5


def test_no_softhsm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "softhsm_module_path", lambda: None)  # a fake: SoftHSM2 cannot be uninstalled here
    with pytest.raises(E.CertDeskError) as info:
        demo.module_path()
    assert "apt install softhsm2" in str(info.value)
