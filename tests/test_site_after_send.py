"""``[site] rebuild_after_send``: a finished send rebuilds the static archive, so on a
static host the new issue (and the welcome mail's link to the latest one) is there at once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import SiteSettings, load_settings
from pipeline.daemon.service import Daemon
from pipeline.errors import ConfigError
from tests.fixtures_scheduler import local

SLOT1 = local("2026-12-02T07:00")


def with_toml(project: Path, extra: str):
    path = project / "brief.toml"
    path.write_text(path.read_text() + "\n" + extra)
    return load_settings(path, env={})


def test_out_set_means_rebuild_by_default_and_paths_are_relative_to_brief_toml(project):
    s = with_toml(project, '[site]\nout = "public"\n')
    assert s.site.out == project / "public" and s.site.rebuild_after_send
    assert s.site.target(project) == project / "public"


def test_without_site_settings_nothing_is_rebuilt_and_build_goes_to_site(project):
    s = load_settings(project / "brief.toml", env={})
    assert s.site == SiteSettings() and not s.site.rebuild_after_send
    assert s.site.target(project) == project / "site"


@pytest.mark.parametrize(
    "extra, key",
    [
        ('[site]\nout = "."\n', "site.out: must not be the newsletter's own folder"),
        ("[site]\nrebuild_after_send = 1\n", "site.rebuild_after_send: must be"),
        ('[site]\nfolder = "x"\n', "site.folder: unknown key"),
    ],
)
def test_bad_site_settings_name_the_key(project, extra, key):
    with pytest.raises(ConfigError) as err:
        with_toml(project, extra)
    assert key in str(err.value)


def test_the_daemon_rebuilds_the_site_after_a_finished_send(
    settings, sched_store, sched_lib, audience3
):
    out = settings.root / "public"
    on = replace(settings, site=SiteSettings(out=out, rebuild_after_send=True))
    outcomes = Daemon(on, sched_store, sched_lib, clock=lambda: SLOT1, poll=0.05).run_once()
    assert [o.event for o in outcomes] == ["sent"]
    assert "site rebuilt" in outcomes[0].detail
    page = out / "issues" / "001" / "index.html"
    assert page.is_file() and "Knight Capital" in page.read_text()


def test_no_rebuild_when_it_is_off(settings, sched_store, sched_lib, audience3):
    outcomes = Daemon(settings, sched_store, sched_lib, clock=lambda: SLOT1, poll=0.05).run_once()
    assert [o.event for o in outcomes] == ["sent"]
    assert not (settings.root / "site").exists()


def test_brief_send_rebuilds_the_site_too(project, brief):
    path = project / "brief.toml"
    path.write_text(path.read_text() + '\n[site]\nout = "public"\n')
    assert brief("lists", "create", "main").code == 0
    assert brief("subscribers", "add", "a@example.org", "--confirmed").code == 0
    sent = brief("send", "1", "--yes")
    assert sent.code == 0, sent.err
    assert "rebuilt the web archive" in sent.out
    assert (project / "public" / "issues" / "001" / "index.html").is_file()
