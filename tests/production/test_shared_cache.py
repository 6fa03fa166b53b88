"""The one cache every worker shares (CACHE_URL) and the whole-page cache's keys (finding 6)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from catalog.cache_backends import FileCache, cache_from_url
from catalog.caching import LOCAL_PAGES
from catalog.models import Rule
from tests.production.conftest import REPO


def cache_entries() -> int:
    """Entries in the test run's file cache (the default backend)."""
    assert settings.CACHES["default"]["BACKEND"] == "catalog.cache_backends.FileCache"
    return len(list(Path(settings.CACHES["default"]["LOCATION"]).glob("*.djcache")))


@pytest.fixture
def rule_id(example_catalog: Any, db: Any) -> str:
    cache.clear()
    return str(Rule.objects.order_by("rule_id").values_list("rule_id", flat=True)[0])


def test_2000_junk_parameter_urls_make_a_handful_of_cache_entries(rule_id: str) -> None:
    client = Client()
    first = client.get(f"/rules/{rule_id}/")
    assert first.status_code == 200
    for i in range(2000):
        response = client.get(f"/rules/{rule_id}/?utm_source={i}&junk{i}=x&all=no{i}")
        assert response.status_code == 200
        assert response.content == first.content
    # The one parameter the page reads makes its own entry; any other value of it reads "off".
    assert client.get(f"/rules/{rule_id}/?all=1").status_code == 200
    assert cache_entries() <= 6, cache_entries()
    assert len(LOCAL_PAGES.items) <= 2


def test_rule_list_junk_parameters_share_the_entry_of_the_filters_read(rule_id: str) -> None:
    client = Client()
    pages = {client.get(f"/rules/?q=powershell&level=high&ref={i}").content for i in range(200)}
    assert len(pages) == 1
    assert cache_entries() <= 12, cache_entries()


def test_read_parameters_are_keyed_in_a_canonical_order(rule_id: str) -> None:
    client = Client()
    one = client.get("/rules/?level=high&q=powershell").content
    entries = cache_entries()
    assert client.get("/rules/?q=powershell&level=high").content == one
    assert cache_entries() == entries


def test_page_served_from_the_shared_cache_carries_the_security_headers(rule_id: str) -> None:
    client = Client()
    miss = client.get(f"/rules/{rule_id}/")
    LOCAL_PAGES.clear()  # as another worker would: only the shared cache has the page
    hit = Client().get(f"/rules/{rule_id}/")
    assert hit.content == miss.content
    for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
        assert hit[header] == miss[header]


def test_a_disallowed_host_is_refused_even_for_a_cached_page(rule_id: str) -> None:
    Client().get(f"/rules/{rule_id}/")
    assert Client(HTTP_HOST="evil.example").get(f"/rules/{rule_id}/").status_code == 400


# -- CACHE_URL ------------------------------------------------------------------------------


def test_cache_url_unset_means_files_shared_by_the_workers_of_one_machine() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "CACHE_DIR"}}
    env.pop("PYTEST_VERSION", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'catalog.settings'; "
        "from django.conf import settings; c = settings.CACHES['default']; "
        "print(c['BACKEND'], c['LOCATION'], c['OPTIONS']['MAX_ENTRIES'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert out[0] == "catalog.cache_backends.FileCache"
    assert out[1].endswith(os.path.join("var", "cache")) or "DATA_DIR" in env
    assert int(out[2]) >= 10_000  # a tiny limit would cull on nearly every write


@pytest.mark.parametrize(
    ("url", "backend", "location"),
    [
        ("redis://10.0.0.5:6379/1", "django.core.cache.backends.redis.RedisCache",
         "redis://10.0.0.5:6379/1"),
        ("rediss://:pw@cache.internal:6380/0", "django.core.cache.backends.redis.RedisCache",
         "rediss://:pw@cache.internal:6380/0"),
        ("valkey://10.0.0.5:6379/2", "django.core.cache.backends.redis.RedisCache",
         "redis://10.0.0.5:6379/2"),
        ("file:///var/cache/catalog", "catalog.cache_backends.FileCache", "/var/cache/catalog"),
        ("", "catalog.cache_backends.FileCache", "/data/cache"),
        ("locmem://", "django.core.cache.backends.locmem.LocMemCache", "catalog"),
    ],
)  # fmt: skip
def test_cache_url_selects_the_backend(url: str, backend: str, location: str) -> None:
    config = cache_from_url(url, Path("/data/cache"))
    assert (config["BACKEND"], config["LOCATION"]) == (backend, location)


def test_an_unknown_cache_url_is_refused_with_the_choices() -> None:
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        cache_from_url("memcached://127.0.0.1:11211", Path("/tmp"))


def _count(location: str, times: int) -> None:
    backend = FileCache(location, {"OPTIONS": {"MAX_ENTRIES": 1000}})
    for _ in range(times):
        backend.incr("hits")


def test_file_cache_counters_lose_no_increment_across_processes(tmp_path: Path) -> None:
    """Throttle counters are add + incr: four processes incrementing at once count every hit
    (Django's file cache reads and rewrites, so racing writers overwrite each other)."""
    backend = FileCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 1000}})
    assert backend.add("hits", 0, 60)
    assert not backend.add("hits", 5, 60)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_count, args=(str(tmp_path), 150)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert backend.get("hits") == 600


def test_file_cache_culls_past_max_entries(tmp_path: Path) -> None:
    backend = FileCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 30, "CULL_EVERY": 5}})
    for i in range(200):
        backend.set(f"k{i}", i, 60)
    assert len(list(tmp_path.glob("*.djcache"))) <= 30 + 5


def test_parameters_the_page_reads_still_make_their_own_pages(rule_id: str) -> None:
    """The rule page's conversion section reads ?target= and ?pipeline=: never share those."""
    from catalog.conversion_views import DEFAULT_TARGET, TARGETS

    other = next(t for t in TARGETS if t != DEFAULT_TARGET)
    client = Client()
    default = client.get(f"/rules/{rule_id}/").content.decode()
    chosen = client.get(f"/rules/{rule_id}/?target={other}&junk=1").content.decode()
    assert f"target={other}" in chosen and f"target={other}" not in default


def test_file_cache_incr_keeps_the_expiry(tmp_path: Path) -> None:
    """A concurrency slot must expire when its request crashed: incr keeps the TTL it was
    added with (Django's file cache resets it to the default hour)."""
    import pickle
    import time

    backend = FileCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 1000}})
    backend.add("slot", 1, 120)
    assert backend.incr("slot") == 2 and backend.decr("slot") == 1
    with open(backend._key_to_file("slot"), "rb") as handle:
        expiry = pickle.load(handle)
    assert time.time() < expiry <= time.time() + 121
    with pytest.raises(ValueError):
        backend.incr("missing")


def test_new_code_does_not_serve_pages_cached_by_the_old_code(
    rule_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared cache outlives a deploy: a page cached by the old templates must not be
    served once the code that renders it has changed (same catalog, same URL)."""
    from catalog import caching

    client = Client()
    assert client.get(f"/rules/{rule_id}/").status_code == 200
    entries = cache_entries()
    assert client.get(f"/rules/{rule_id}/").status_code == 200
    assert cache_entries() == entries  # same code: the cached page is reused
    LOCAL_PAGES.items.clear()
    monkeypatch.setattr(caching, "code_version", lambda: "a-new-deploy")
    assert client.get(f"/rules/{rule_id}/").status_code == 200
    assert cache_entries() > entries  # new code: the page was rendered and cached anew


def _slow_page(calls: list[int], status: int = 200, delay: float = 0.3) -> Any:
    import time as _time

    from django.http import HttpResponse

    def get_response(request: Any) -> Any:
        calls.append(1)
        _time.sleep(delay)
        return HttpResponse(b"rendered", status=status)

    return get_response


def _concurrently(middleware: Any, key: str, n: int = 6) -> list[Any]:
    import threading

    from django.test import RequestFactory

    answers: list[Any] = []
    factory = RequestFactory()

    def one() -> None:
        answers.append(middleware._serve(factory.get("/rules/"), key))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_misses_of_one_page_render_it_once() -> None:
    from catalog.caching import PageCacheMiddleware

    cache.clear()
    calls: list[int] = []
    middleware = PageCacheMiddleware(_slow_page(calls))
    answers = _concurrently(middleware, "page:test:dogpile")
    assert len(calls) == 1  # without the render lock: one render per request (6)
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.content for a in answers} == {b"rendered"}
    assert cache.get("page:test:dogpile:rendering") is None  # the lock is released


def test_a_render_that_stores_nothing_lets_the_waiters_render() -> None:
    from catalog.caching import PageCacheMiddleware

    cache.clear()
    calls: list[int] = []
    middleware = PageCacheMiddleware(_slow_page(calls, status=503, delay=0.1))
    answers = _concurrently(middleware, "page:test:dogpile-503", n=3)
    # The first render's 503 is not stored: the others do not wait the full 2 s for it.
    assert len(calls) == 3
    assert [a.status_code for a in answers] == [503] * 3
