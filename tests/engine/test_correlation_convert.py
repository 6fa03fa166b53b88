"""Conversion of correlations (and of rules with meta filters applied) equals ``sigma
convert -t TARGET --without-pipeline`` on the same files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rules.correlate.convert import CORRELATION_TARGETS, convert_documents
from tests.conftest import EXAMPLES

CORRELATIONS = EXAMPLES / "correlations"
SIGMA = Path(sys.executable).with_name("sigma")


def sigma_convert(target: str, *files: Path) -> str:
    result = subprocess.run(
        [str(SIGMA), "convert", "-t", target, "--without-pipeline", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


needs_cli = pytest.mark.skipif(
    not SIGMA.exists() and not shutil.which("sigma"), reason="sigma-cli is not installed"
)


@needs_cli
@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("mr_discovery_burst.yml", ("splunk", "esql", "loki", "sqlite")),
        ("mr_large_outbound_transfer.yml", ("loki", "sqlite")),
    ],
)
def test_correlation_conversion_equals_sigma_convert(name: str, targets: tuple[str, ...]) -> None:
    path = CORRELATIONS / name
    for result in convert_documents([path.read_text()], targets):
        assert not result.error, (result.target, result.error)
        assert "\n".join(result.queries) == sigma_convert(result.target, path), result.target


@needs_cli
def test_filtered_rule_conversion_equals_sigma_convert(tmp_path: Path) -> None:
    # The bad-password rule alone (first document) plus the filter file.
    rule_text = (CORRELATIONS / "mr_password_guessing_then_logon.yml").read_text().split("---")[0]
    rule = tmp_path / "rule.yml"
    rule.write_text(rule_text)
    flt = CORRELATIONS / "filter_jump_host_password_failures.yml"
    [result] = convert_documents([rule_text, flt.read_text()], ("splunk",))
    assert not result.error
    expected = sigma_convert("splunk", rule, flt)
    assert "\n".join(result.queries) == expected
    assert "JUMP01" in expected and "svc_health" in expected


def test_unsupported_type_says_why() -> None:
    text = (CORRELATIONS / "mr_large_outbound_transfer.yml").read_text()
    [splunk] = convert_documents([text], ("splunk",))
    assert splunk.queries == [] and "value_sum" in splunk.error


def test_targets_are_the_correlation_backends() -> None:
    assert set(CORRELATION_TARGETS) == {"splunk", "esql", "loki", "sqlite"}


# -- the engine's windows agree with pySigma's SQLite backend run on the same events ----------

BASE_A = "0b7f0a4e-8a3c-4d4e-9a55-3a8d7c3e1f0a"
BASE_B = "0b7f0a4e-8a3c-4d4e-9a55-3a8d7c3e1f0b"
CORR = "0b7f0a4e-8a3c-4d4e-9a55-3a8d7c3e1f0c"
T0 = 1_714_557_600.0


def _base(ident: str, name: str, kind: str) -> str:
    return f"""title: base {name}
id: {ident}
name: {name}
logsource:
    product: test
detection:
    sel:
        kind: {kind}
    condition: sel
"""


SQLITE_CASES = {
    "event_count": ("{gte: 2}", [{}, {}], ["a", "a"]),
    "value_count": ("{field: User, gte: 2}", [{"User": "u1"}, {"User": "u2"}], ["a", "a"]),
    "temporal": (None, [{}, {}], ["a", "b"]),
    "temporal_ordered": (None, [{}, {}], ["a", "b"]),
    "value_sum": ("{field: Bytes, gte: 100}", [{"Bytes": 60}, {"Bytes": 40}], ["a", "a"]),
    "value_avg": ("{field: Bytes, eq: 50}", [{"Bytes": 60}, {"Bytes": 40}], ["a", "a"]),
}


def _sqlite_alerts(texts: list[str], rows: list[dict[str, object]]) -> list[object]:
    import sqlite3

    [result] = convert_documents(texts, ("sqlite",))
    assert not result.error, result.error
    db = sqlite3.connect(":memory:")
    columns = ["timestamp", "kind", "Host", "User", "Bytes"]
    db.execute(f"create table logs ({', '.join(columns)})")
    for row in rows:
        db.execute("insert into logs values (?, ?, ?, ?, ?)", [row.get(c) for c in columns])
    return db.execute(result.queries[0]).fetchall()


@pytest.mark.parametrize("gap", [60.0, 60.001], ids=["inside", "outside"])
@pytest.mark.parametrize("group", [False, True], ids=["no-group", "group-by"])
@pytest.mark.parametrize("kind", sorted(SQLITE_CASES))
def test_windows_agree_with_the_sqlite_backend(kind: str, group: bool, gap: float) -> None:
    pytest.importorskip("sigma.backends.sqlite")
    import datetime

    import yaml

    from rules.correlate import correlate, parse_correlation, resolve_references
    from rules.events import Event

    condition, fields, refs = SQLITE_CASES[kind]
    rules = "[a, b]" if "b" in refs else "[a]"
    text = f"""title: c
id: {CORR}
correlation:
    type: {kind}
    rules: {rules}
{"    group-by: [Host]" if group else ""}
    timespan: 60s
{f"    condition: {condition}" if condition else ""}
"""
    # Only referenced rules: an unreferenced one would be converted as a query of its own.
    texts = [_base(BASE_A, "a", "x"), *([_base(BASE_B, "b", "y")] if "b" in refs else []), text]
    rows = []
    for offset, extra, ref in zip((0.0, gap), fields, refs, strict=True):
        moment = datetime.datetime.fromtimestamp(T0 + offset, tz=datetime.UTC)
        stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        rows.append({"timestamp": stamp, "kind": "x" if ref == "a" else "y", "Host": "h1", **extra})
    alerts = _sqlite_alerts(texts, rows)
    rule = resolve_references(parse_correlation(yaml.safe_load(text)), {"a": "A", "b": "B"}.get)
    ids = {"x": "A", "y": "B"}
    events = [Event(dict(row)) for row in rows]
    matches = correlate([rule], events, [[ids[str(row["kind"])]] for row in rows]).matches
    assert bool(matches) == bool(alerts), (matches, alerts)
    assert bool(matches) is (gap == 60.0)
