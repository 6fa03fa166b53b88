"""The rule page is cached whole per URL and catalog state, for anonymous visitors only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Rule
from catalog.services import import_rules

WEBCLIENT = "f189fc44-f48d-40c2-afcc-925b4d6d5439"


def test_second_view_is_served_from_the_cache(client: Any, examples: None) -> None:
    url = f"/rules/{WEBCLIENT}/"
    first = client.get(url)
    assert first.status_code == 200
    assert b"csrfmiddlewaretoken" not in first.content  # nothing per visitor on the page
    with CaptureQueriesContext(connection) as queries:
        second = client.get(url)
    assert second.content == first.content
    assert len(queries) == 1, [q["sql"] for q in queries]  # the catalog fingerprint only


def test_a_new_import_is_shown_at_once(client: Any, examples: None, tmp_path: Path) -> None:
    url = f"/rules/{WEBCLIENT}/"
    assert b"Renamed by a re-import" not in client.get(url).content
    rule = Rule.objects.get(rule_id=WEBCLIENT)
    changed = tmp_path / "changed.yml"
    changed.write_text(rule.raw_yaml.replace(rule.title, "Renamed by a re-import", 1))
    report = import_rules([str(changed)])
    assert report.updated == 1
    assert b"Renamed by a re-import" in client.get(url).content


def test_query_strings_and_sessions_bypass_or_split_the_cache(client: Any, examples: None) -> None:
    url = f"/rules/{WEBCLIENT}/"
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        client.get(url + "?all=1")
    assert len(queries) > 1  # another URL renders afresh
    client.cookies["sessionid"] = "someone"
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    assert len(queries) > 1  # a visitor with a session is never served a shared copy
