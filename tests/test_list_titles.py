"""Lists with a title and a visibility (issue 13, measured item 6: every list was public
and shown by its slug, an internal test list included, and the confirmation mail said
"The Brief (main)")."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from pipeline.store import add_subscriber, audience, create_list, show
from tests.fixtures_web import body_text, link_in, outbox_messages

ANN = "ann@example.com"


def _options(html: str) -> dict[str, str]:
    """The subscribe form's <option value=...>text</option> pairs."""
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', html))


@pytest.fixture
def titled_lists(web_engine):
    """main (untitled, public), weekly (titled, public), internal (private)."""
    from pipeline.store.lists import Visibility

    add_subscriber(web_engine, "seed@example.com", confirmed=True, source="test")  # makes main
    create_list(web_engine, "weekly", "Once a week", title="The Brief weekly")
    create_list(web_engine, "internal", title="Staff tests", visibility=Visibility.PRIVATE)


def test_store_keeps_a_lists_title_and_visibility(store):
    from pipeline.store import lists
    from pipeline.store.lists import Visibility

    create_list(store, "weekly", title="The Brief weekly")
    create_list(store, "internal", visibility=Visibility.PRIVATE)
    found = {info.name: info for info in lists(store)}
    assert found["weekly"].title == "The Brief weekly"
    assert found["weekly"].visibility is Visibility.PUBLIC
    assert found["weekly"].display == "The Brief weekly"
    assert found["internal"].visibility is Visibility.PRIVATE
    assert found["internal"].display == "internal"  # no title: the slug


@pytest.mark.parametrize("title", ["x" * 201, "line\nbreak", "tab\there"])
def test_a_bad_list_title_is_refused(store, title):
    from pipeline.errors import StoreError

    with pytest.raises(StoreError, match="list title"):
        create_list(store, "weekly", title=title)


def test_cli_creates_a_private_list_with_a_title(brief):
    made = brief("lists", "create", "weekly", "--title", "The Brief weekly", "--private")
    assert made.code == 0, made.err
    shown = json.loads(brief("lists", "list", "--json").out)
    [weekly] = [item for item in shown if item["name"] == "weekly"]
    assert weekly["title"] == "The Brief weekly" and weekly["visibility"] == "private"


def test_cli_bad_title_is_one_line_and_exit_one(brief):
    result = brief("lists", "create", "weekly", "--title", "x" * 300)
    assert result.code == 1
    assert result.err.strip().count("\n") == 0 and "list title" in result.err


def test_subscribe_form_offers_public_lists_by_title_only(client, titled_lists):
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert _options(page.text) == {"main": "main", "weekly": "The Brief weekly"}
    assert "internal" not in page.text and "Staff tests" not in page.text


def test_subscribing_to_a_private_list_is_refused(client, web_settings, titled_lists):
    response = client.post(
        "/subscribe", data={"email": ANN, "list": "internal", "website": "", "name": ""}
    )
    assert response.status_code == 400 and "choose one of the lists" in response.text
    assert outbox_messages(web_settings) == []


def test_confirmation_and_welcome_name_the_list_by_its_title(client, web_settings, titled_lists):
    client.post("/subscribe", data={"email": ANN, "list": "weekly", "website": "", "name": ""})
    [confirm] = outbox_messages(web_settings)
    text = body_text(confirm)
    assert "The Brief weekly" in text and "(weekly)" not in text
    link = urlsplit(link_in(confirm, "confirm")).path
    page = client.get(link)
    assert "The Brief weekly" in page.text and "(weekly)" not in page.text
    client.post(link)
    welcome = outbox_messages(web_settings)[-1]
    assert "The Brief weekly" in body_text(welcome) and "(weekly)" not in body_text(welcome)


def test_confirmation_for_the_untitled_default_list_names_the_newsletter_alone(
    client, web_settings, titled_lists
):
    client.post("/subscribe", data={"email": ANN, "list": "main", "website": "", "name": ""})
    [confirm] = outbox_messages(web_settings)
    assert "The Brief" in body_text(confirm) and "(main)" not in body_text(confirm)


def test_preferences_show_public_lists_and_private_lists_the_person_is_on(
    client, web_engine, titled_lists
):
    add_subscriber(web_engine, ANN, list_name="main", confirmed=True, source="test")
    member = next(r for r in audience(web_engine, "main") if r.email == ANN)
    url = f"/preferences/{member.preferences_token}"
    page = client.get(url)
    assert "The Brief weekly" in page.text
    assert 'value="internal"' not in page.text and "Staff tests" not in page.text
    # A private list is not for the taking: a crafted POST does not add anyone to it.
    client.post(url, data={"list": ["main", "internal"]})
    assert {m.list_name for m in show(web_engine, ANN).memberships} == {"main"}

    add_subscriber(web_engine, ANN, list_name="internal", confirmed=True, source="test")
    page = client.get(url)
    assert 'value="internal" checked' in page.text and "Staff tests" in page.text


def test_an_existing_list_gets_a_title_and_goes_private_and_back(store):
    from pipeline.errors import NotFound
    from pipeline.store import lists
    from pipeline.store.lists import Visibility, update_list

    create_list(store, "weekly")
    update_list(store, "weekly", title="The Brief weekly", visibility=Visibility.PRIVATE)
    [weekly] = [i for i in lists(store) if i.name == "weekly"]
    assert weekly.display == "The Brief weekly" and not weekly.public
    update_list(store, "weekly", visibility=Visibility.PUBLIC)  # the title stays
    [weekly] = [i for i in lists(store) if i.name == "weekly"]
    assert weekly.title == "The Brief weekly" and weekly.public
    with pytest.raises(NotFound):
        update_list(store, "nope", title="x")


def test_cli_edits_a_lists_title_and_visibility(brief):
    assert brief("subscribers", "add", "a@example.org", "--confirmed", "--source", "cli").code == 0
    edited = brief("lists", "edit", "main", "--title", "The Brief", "--private")
    assert edited.code == 0, edited.err
    [main] = json.loads(brief("lists", "list", "--json").out)
    assert main["title"] == "The Brief" and main["visibility"] == "private"
    assert brief("lists", "edit", "main", "--public").code == 0
    assert json.loads(brief("lists", "list", "--json").out)[0]["visibility"] == "public"
    missing = brief("lists", "edit", "nope", "--title", "x")
    assert missing.code == 1 and missing.err.strip().count("\n") == 0
