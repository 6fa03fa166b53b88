"""A conversion with a pasted pipeline runs in a child process under CUSTOM_PIPELINE_SECONDS
(catalog.conversion.convert_with_pipeline): past it the page and the API refuse it and no
process is left behind, with HEAVY_OFFLOAD off (forked from the web process) and on (forked
from the helper); an ordinary pipeline converts exactly as it did in process."""

from __future__ import annotations

import dataclasses
import html
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog import conversion, offload
from catalog.models import Conversion
from rules import convert as conv
from tests.conversion.rules_fixtures import SEED_ID

pytestmark = pytest.mark.django_db

PIPELINE_YAML = """\
name: my field names
priority: 30
transformations:
  - type: field_name_mapping
    mapping:
      ScriptBlockText: script.text
"""

# No nested quantifier (so validation lets it through), yet on every value of the seed rule
# ("*Test-NetConnection*", 20 characters) re backtracks over C(34, 14) ~ 10^9 splits.
SLOW_YAML = (
    "name: slow\ntransformations:\n"
    "  - type: replace_string\n    regex: '" + ".*" * 14 + "!'\n    replacement: x\n"
)
LIMIT = 0.5


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid``, zombies included (a child not reaped is left too).
    Compared before and after: multiprocessing's resource tracker is a child too."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


@pytest.fixture
def tight(settings: Any) -> Any:
    settings.CUSTOM_PIPELINE_SECONDS = LIMIT
    return settings


@pytest.fixture(params=["in process", "offloaded"])
def mode(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Offloading off (the child is forked from this process) and on (from the helper)."""
    settings.HEAVY_OFFLOAD = request.param == "offloaded"
    settings.HEAVY_OFFLOAD_TIMEOUT = 30
    offload.shutdown()
    try:
        yield request.param
    finally:
        offload.shutdown()


def forking_process(mode: str) -> int:
    """The pid that forks the conversion's child in this mode."""
    if mode == "in process":
        return os.getpid()
    (helper,) = offload._all
    return int(helper.process.pid or 0)


def post_api(client: Any, yaml_text: str) -> Any:
    return client.post(
        f"/api/rules/{SEED_ID}/convert/",
        {"target": "splunk", "pipeline": "splunk_windows", "pipeline_yaml": yaml_text},
        content_type="application/json",
    )


def test_api_overrun_is_a_422_and_leaves_no_process(site, client, seed_rule, tight, mode):
    post_api(client, PIPELINE_YAML)  # starts the helper when offloading (not timed)
    forker = forking_process(mode)
    before = children(forker)
    started = time.monotonic()
    response = post_api(client, SLOW_YAML)
    elapsed = time.monotonic() - started
    assert response.status_code == 422
    assert response.json() == {
        "detail": "the conversion with this pipeline was stopped: it took longer than 0.5 s. "
        "Use fewer or simpler transformations (regex replacements, one-to-many mappings)",
        "parameter": "pipeline_yaml",
    }
    assert elapsed < LIMIT + 3
    assert children(forker) == before  # killed and reaped, not left running its regex
    if mode == "offloaded":
        assert offload._all[0].process.pid == forker  # the helper itself survived
    assert post_api(client, PIPELINE_YAML).status_code == 200  # and still converts


def test_page_overrun_is_an_inline_422(site, client, seed_rule, tight, mode):
    url = f"/rules/{SEED_ID}/convert/"
    form = {"target": "splunk", "pipeline": "splunk_windows", "pipeline_yaml": PIPELINE_YAML}
    assert client.post(url, form).status_code == 200  # starts the helper when offloading
    forker = forking_process(mode)
    before = children(forker)
    page = client.post(url, {**form, "pipeline_yaml": SLOW_YAML})
    assert page.status_code == 422
    body = html.unescape(page.content.decode())
    assert "Your pipeline cannot be used" in body and "took longer than 0.5 s" in body
    assert 'ScriptBlockText="*Test-NetConnection*"' in body  # the catalog pipeline's query
    assert children(forker) == before


def test_ordinary_pipeline_converts_as_it_did_in_process(site, client, seed_rule, mode):
    custom = conv.parse_custom_pipeline(PIPELINE_YAML)
    processes = children(os.getpid())
    before = conv.Converter("splunk", "splunk_windows", custom=custom).convert(
        seed_rule.raw_yaml, filename=conversion.rule_filename(seed_rule)
    )
    now = conversion.convert_with_pipeline(seed_rule, "splunk", "splunk_windows", None, custom)
    assert dataclasses.replace(now, seconds=0) == dataclasses.replace(before, seconds=0)
    assert 'script.text="*Test-NetConnection*"' in now.query
    if mode == "offloaded":
        assert offload._all, "converted in the helper"
    data = post_api(client, PIPELINE_YAML).json()
    assert data["query"] == before.query and data["custom_pipeline"] == custom.digest
    if mode == "in process":
        assert children(os.getpid()) == processes
    else:
        assert children(forking_process(mode)) == set()
    assert Conversion.objects.count() == 0


def test_a_busy_helper_is_a_503_with_retry_after(site, client, seed_rule, settings):
    settings.HEAVY_OFFLOAD = True
    settings.HEAVY_PER_PROCESS = 1
    from catalog.throttling import _semaphore

    semaphore = _semaphore()
    assert semaphore.acquire(blocking=False)  # a heavy evaluation holds the only slot
    try:
        response = post_api(client, PIPELINE_YAML)
    finally:
        semaphore.release()
        offload.shutdown()
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["parameter"] is None and "busy" in response.json()["detail"]


def test_shipped_pipelines_still_convert_in_process(seed_rule, monkeypatch) -> None:
    """The cached conversions never fork (their cost is unchanged)."""

    def no_fork() -> int:
        raise AssertionError("forked")

    monkeypatch.setattr(os, "fork", no_fork)
    result, cached = conversion.get_conversion(seed_rule, "splunk", "splunk_windows")
    assert result.ok and not cached
    with pytest.raises(AssertionError, match="forked"):
        conversion.convert_with_pipeline(
            seed_rule, "splunk", "splunk_windows", None, conv.parse_custom_pipeline(PIPELINE_YAML)
        )


def test_api_size_bounds_are_400s_naming_the_parameter_and_line(site, client, seed_rule):
    many = "transformations:\n" + "  - {type: replace_string, regex: a, replacement: b}\n" * 300
    response = post_api(client, many)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "line 258: more than 256 transformations, postprocessing items and finalizers",
        "parameter": "pipeline_yaml",
    }
    wide = "transformations:\n  - {type: replace_string, regex: a, replacement: '" + "x" * 2000
    response = post_api(client, wide + "'}\n")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("line 2: 'replacement' is longer than 1024")
