"""A third party's package with its own settings (tests/thirdparty/brief_acme_mail.py),
installed beside Brief as pip would install it: its [provider.acme] table is checked by
`brief check` against the schema the package declares, a bad key is one line naming
it, `brief send` goes through it, and its webhook verifier answers /webhooks/acme."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.store import add_subscriber, is_suppressed, open_store
from tests.fixtures_send import subscribe_many
from tests.test_config import edit

ACME_TABLE = '\n[provider.acme]\nregion = "us"\nbatch = 5\n'
SECRETS = {"ACME_TOKEN": "acme-t0ken", "BRIEF_SMTP_PASSWORD": "not-for-acme"}


def _use_acme(project: Path, table: str = ACME_TABLE) -> None:
    edit(project, 'name = "outbox"', 'name = "acme"')
    toml = project / "brief.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + table, encoding="utf-8")


def _brief(project: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    """`brief` in a process of its own, the Acme package on its PYTHONPATH."""
    env = {**os.environ, **SECRETS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "--config", str(project / "brief.toml"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _spool(project: Path) -> list[dict]:
    path = project / ".brief" / "acme" / "sent.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_third_party_provider_with_its_own_settings_sends_end_to_end(project, acme_site):
    _use_acme(project)
    check = _brief(project, acme_site, "check")
    assert check.returncode == 0, check.stderr

    engine = open_store(f"sqlite:///{project / '.brief' / 'brief.db'}")
    readers = subscribe_many(engine, 3)
    engine.dispose()
    sent = _brief(project, acme_site, "send", "1", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "3 sent" in sent.stdout
    lines = _spool(project)
    assert sorted(line["to"] for line in lines) == readers
    # Built from its own table (region, batch from brief.toml; spool from its default)…
    assert {(line["region"], line["batch"]) for line in lines} == {("us", 5)}
    # …and its declared secret, and no other one of the environment.
    assert all(line["token_ok"] and line["secrets"] == ["ACME_TOKEN"] for line in lines)
    assert {line["sender"] for line in lines} == {"brief@example.com"}

    copy = _brief(project, acme_site, "send", "1", "--to", "editor@example.com")
    assert copy.returncode == 0, copy.stderr
    assert "through acme" in copy.stdout
    assert _spool(project)[-1]["to"] == "editor@example.com"


@pytest.mark.parametrize(
    "table, message",
    [
        ('regoin = "us"', "provider.acme.regoin: unknown key (allowed here: batch, region, spool)"),
        ('region = "mars"', "provider.acme.region: must be one of eu, us"),
        ("batch = 1000", "provider.acme.batch: must be between 1 and 100, got 1000"),
        ('batch = "5"', "provider.acme.batch: must be an integer, got '5'"),
        (
            'token = "acme-t0ken"',
            "provider.acme.token: secrets never go in brief.toml; set the environment "
            "variable named in the README instead",
        ),
    ],
)
def test_a_bad_key_in_a_third_party_table_is_one_line_naming_it(project, acme_site, table, message):
    _use_acme(project, f"\n[provider.acme]\n{table}\n")
    check = _brief(project, acme_site, "check")
    assert check.returncode == 2
    assert check.stderr == f"error: {message}\n"


def test_a_provider_table_for_a_provider_nobody_installed_is_refused_naming_it(project, brief):
    _use_acme(project)  # the Acme package is not on this process's path
    with pytest.raises(ConfigError) as info:
        load_settings(project / "brief.toml", env={})
    assert str(info.value).startswith("provider.acme: unknown provider 'acme' (installed: ")
    outcome = brief("check")
    assert outcome.code == 2 and outcome.err.startswith("error: provider.acme: unknown provider")
    assert outcome.err.count("\n") == 1


def test_a_third_party_webhook_verifier_is_found_by_name_with_its_table_and_secret(
    acme_installed, published, web_env, client_for, web_engine
):
    toml = published / "brief.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[webhooks.acme]\nheader = "x-acme-key"\n',
        encoding="utf-8",
    )
    settings = load_settings(toml, env={**web_env, "ACME_HOOK_SECRET": "h00k-secret"})
    client = client_for(settings)
    add_subscriber(web_engine, "gil@example.com", confirmed=True, source="test")
    body = json.dumps({"id": "evt-1", "bounced": "gil@example.com"})

    wrong = client.post("/webhooks/acme", content=body, headers={"x-acme-key": "guess"})
    assert wrong.status_code == 401 and not is_suppressed(web_engine, "gil@example.com")
    # The default header is not the one its table names.
    default = client.post("/webhooks/acme", content=body, headers={"x-acme-secret": "h00k-secret"})
    assert default.status_code == 401
    right = client.post("/webhooks/acme", content=body, headers={"x-acme-key": "h00k-secret"})
    assert right.status_code == 200 and right.json()["applied"] == 1
    assert is_suppressed(web_engine, "gil@example.com")
    assert client.post("/webhooks/pigeon", content=body).status_code == 404


def test_a_bad_key_in_a_third_party_webhook_table_names_it(acme_installed, published):
    toml = published / "brief.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[webhooks.acme]\ncolour = "blue"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(toml, env={})
    assert str(info.value) == "webhooks.acme.colour: unknown key (allowed here: header)"


def test_a_registered_verifier_that_cannot_be_loaded_is_a_404_and_one_warning(
    acme_installed, web_settings, client_for, caplog, tmp_path, monkeypatch
):
    info = tmp_path / "broken-site" / "brief_broken_hook-1.0.dist-info"
    info.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(info.parent))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brief-broken-hook\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[brief.webhooks]\nbroken = brief_acme_mail:Missing\n")
    client = client_for(web_settings)
    with caplog.at_level("WARNING", logger="brief.web"):
        response = client.post("/webhooks/broken", content=b"{}")
    assert response.status_code == 404
    [warning] = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert "brief_acme_mail:Missing" in warning and "cannot be loaded" in warning
