"""The one highlighting helper behind the sandbox page and the job page
(catalog.sandbox.highlighted_values): the sandbox shows a bounded excerpt and where it sits,
the job page the value cut at its length."""

from __future__ import annotations

from collections import Counter

from catalog.jobs.views import VALUE_CHARS
from catalog.sandbox import highlighted_values
from rules.evaluate import Evaluator, RuleMatch
from rules.evaluate.bounds import ResponseLimits, bound_result
from rules.events import Event
from rules.parse import parse_rule
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml

LONG = "a" * 4500 + "marker" + "b" * 500


def explained_match(command_line: str, *, bounded: bool) -> RuleMatch:
    rule = parse_rule(
        rule_yaml(
            title="Marker",
            id="00000000-0000-4000-9000-000000000099",
            status="test",
            logsource=WINDOWS_PROCESS_CREATION,
            detection="sel:\n    CommandLine|contains: 'marker'\n    Image|endswith: '.exe'\n"
            "condition: sel",
            level="low",
        )
    )
    event = Event({"CommandLine": command_line, "Image": "C:\\x\\tool.exe"}, index=0)
    result = Evaluator([rule]).evaluate(event, all_rules=True)
    if bounded:
        bound_result(result, ResponseLimits(), Counter())
    (match,) = result.matches
    return match


def test_the_sandbox_shows_an_excerpt_and_its_place() -> None:
    values = {v["field"]: v for v in highlighted_values(explained_match(LONG, bounded=True))}
    line = values["CommandLine"]
    assert (line["offset"], line["length"]) == (4500 - 120, len(LONG))
    assert line["pieces"] == [("a" * 120, False), ("marker", True), ("b" * 120, False)]
    assert values["Image"]["pieces"] == [("C:\\x\\tool", False), (".exe", True)]


def test_the_job_page_cuts_long_values() -> None:
    values = {v["field"]: v for v in highlighted_values(explained_match(LONG, bounded=False),
                                                        cut=VALUE_CHARS)}  # fmt: skip
    line = values["CommandLine"]
    assert line["pieces"] == [("a" * VALUE_CHARS, False)]  # the span lies past the cut
    short = highlighted_values(explained_match("x marker y", bounded=False), cut=VALUE_CHARS)
    assert {v["field"]: v["pieces"] for v in short}["CommandLine"] == [
        ("x ", False), ("marker", True), (" y", False),
    ]  # fmt: skip
