"""The workbench engine: parse problems with positions and hints, the field check, the
backtest over regression samples, one-pass draft analysis and the tune flow's filter."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from rules.backtest import backtest, load_regression_set, normalise_path
from rules.evaluate import Evaluator
from rules.field_check import check_fields, default_taxonomy, logsource_key, suggest
from rules.model import LogSource
from rules.parse import parse_rule
from rules.similarity import SimilarityIndex
from rules.workbench import SourceMap, add_exclusion, analyse_draft, parse_draft, tuned_condition
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml, write_regression_sample

RULE_ID = "c1b2c3d4-0000-4000-8000-000000000001"
OTHER_ID = "c1b2c3d4-0000-4000-8000-000000000002"
SYSMON_1 = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}
WHOAMI = {**SYSMON_1, "Image": "C:\\Windows\\System32\\whoami.exe", "CommandLine": "whoami /all"}
NET = {**SYSMON_1, "Image": "C:\\Windows\\System32\\net.exe", "CommandLine": "net user"}
DETECTION = """
selection:
    Image|endswith: '\\whoami.exe'
    CommandLine|contains: '/all'
condition: selection
"""


def draft(detection: str = DETECTION, rule_id: str = RULE_ID, **fields: object) -> str:
    values: dict[str, object] = {
        "title": "Whoami all",
        "id": rule_id,
        "logsource": WINDOWS_PROCESS_CREATION,
        "detection": detection,
    }
    values.update(fields)
    return rule_yaml(**values)


def position(text: str, needle: str) -> tuple[int, int]:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


# -- parse problems ----------------------------------------------------------------------------


def test_a_valid_draft_has_no_problem() -> None:
    rule, problems, _ = parse_draft(draft())
    assert rule is not None and problems == []


def test_unknown_modifier_points_at_it_and_suggests() -> None:
    text = draft(DETECTION.replace("endswith", "endswiths"))
    problem = parse_draft(text)[1][0]
    assert problem.code == "bad-modifier"
    assert (problem.line, problem.column) == position(text, "endswiths")
    assert "'endswith'" in problem.hint


def test_undefined_identifier_points_at_it_and_suggests() -> None:
    text = draft(
        DETECTION.replace("condition: selection", "condition: selection and not selektion")
    )
    problem = parse_draft(text)[1][0]
    assert problem.code == "bad-condition"
    assert (problem.line, problem.column) == position(text, "selektion")
    assert "'selection'" in problem.hint


def test_condition_grammar_error_points_into_the_condition() -> None:
    text = draft(DETECTION.replace("condition: selection", "condition: selection and and"))
    problem = parse_draft(text)[1][0]
    line, column = position(text, "and and")
    assert (problem.line, problem.column) == (line, column + 4)


def test_yaml_error_has_the_parser_position_and_a_tab_hint() -> None:
    text = draft().replace("    product: windows", "\tproduct: windows")
    problem = parse_draft(text)[1][0]
    assert problem.code == "bad-yaml" and "tabs" in problem.hint
    assert problem.line == position(text, "\tproduct")[0]
    assert "<unicode string>" not in problem.message


@pytest.mark.parametrize(
    ("text", "code", "hint"),
    [
        ("title: x\n", "not-a-rule", "id: "),
        (draft().replace("logsource:\n    product: windows\n    category: process_creation\n",
                         "logsource: 5\n"), "not-a-rule", "mapping"),
        (draft(DETECTION.replace("condition: selection\n", "")), "bad-condition", "condition"),
        (draft(DETECTION.replace("'/all'", "{a: 1}")), "bad-modifier", "string"),
        (draft(DETECTION.replace("contains: '/all'", "re: '(['")), "bad-modifier", "escape"),
    ],
    ids=["missing-keys", "logsource-type", "no-condition", "nested-value", "bad-regex"],
)  # fmt: skip
def test_every_problem_has_a_position_and_a_hint(text: str, code: str, hint: str) -> None:
    problem = parse_draft(text)[1][0]
    assert problem.code == code and hint in problem.hint
    assert problem.line >= 1 and problem.column >= 1


def test_source_map_finds_keys_and_values() -> None:
    text = draft()
    source = SourceMap(text)
    assert source.key("detection", "selection") == position(text, "selection:")
    assert source.field_key("selection", "CommandLine") == position(text, "CommandLine")
    assert SourceMap("a: [").keys == {}


# -- field check -------------------------------------------------------------------------------


def test_field_check_flags_unknown_fields_with_suggestions() -> None:
    rule = parse_rule(draft(DETECTION.replace("CommandLine", "CommandLin")))
    check = check_fields(rule)
    assert check.covered and not check.ok
    assert [(u.field, u.identifiers) for u in check.unknown] == [("CommandLin", ("selection",))]
    assert check.unknown[0].suggestions[0] == "CommandLine"


def test_field_check_puts_a_case_difference_first() -> None:
    assert suggest("commandline", ["CommandLine", "ParentCommandLine"])[0] == "CommandLine"
    rule = parse_rule(draft(DETECTION.replace("CommandLine", "commandline")))
    assert check_fields(rule).unknown[0].case_only


def test_field_check_skips_logsources_the_taxonomy_does_not_know() -> None:
    rule = parse_rule(draft(logsource={"product": "acme", "service": "widgets"}))
    check = check_fields(rule)
    assert not check.covered and check.ok


def test_taxonomy_keys_match_the_shipped_file() -> None:
    taxonomy = default_taxonomy()
    key = logsource_key(LogSource(product="windows", category="process_creation"))
    assert key == "windows_process_creation_none" and "CommandLine" in taxonomy.fields[key]
    assert len(taxonomy.fields) > 100


# -- backtest ----------------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    write_regression_sample(tmp_path, "whoami", RULE_ID, "Whoami all", [WHOAMI])
    write_regression_sample(tmp_path, "net", OTHER_ID, "Net user", [NET])
    return tmp_path


def test_regression_set_reads_samples_once_per_folder_state(corpus: Path) -> None:
    first = load_regression_set(corpus)
    assert [(s.rule_ids, len(s.events)) for s in first.samples] == [
        ((OTHER_ID,), 1),
        ((RULE_ID,), 1),
    ]
    assert load_regression_set(corpus) is first
    write_regression_sample(corpus, "more", str(uuid.uuid4()), "More", [NET, NET])
    assert load_regression_set(corpus).event_count == 4
    assert load_regression_set(corpus / "nowhere").samples == ()


def test_backtest_own_samples_by_path_or_id_and_other_hits(corpus: Path) -> None:
    regression = load_regression_set(corpus)
    own_path = "regression_data/rules/whoami/info.yml"
    copy = parse_rule(draft(rule_id=str(uuid.uuid4()), regression_tests_path=own_path))
    evaluator = Evaluator([copy])
    result = backtest(copy, regression, lambda ev: bool(evaluator.match_ids(ev)))
    assert result.fires_on_own is True and [h.sample.path for h in result.own] == [own_path]
    broad = parse_rule(draft("sel:\n    CommandLine|contains: ' '\ncondition: sel"))
    evaluator = Evaluator([broad])
    result = backtest(broad, regression, lambda ev: bool(evaluator.match_ids(ev)))
    # Its id is the whoami rule's: that sample is its own; the net sample is another's.
    assert [h.rule_id for h in result.hits] == [OTHER_ID]
    assert result.to_dict()["own"][0]["own"] is True


def test_normalise_path() -> None:
    assert normalise_path(" ./regression_data\\a/info.yml") == "regression_data/a/info.yml"


# -- one-pass analysis and tuning --------------------------------------------------------------


def test_analyse_draft_in_one_pass(corpus: Path) -> None:
    catalog = [parse_rule(draft(rule_id=OTHER_ID, title="Original"))]
    analysis = analyse_draft(
        draft(), SimilarityIndex.from_parsed(catalog), regression=load_regression_set(corpus)
    )
    assert analysis.ok and analysis.duplicate is not None
    assert analysis.duplicate.id == OTHER_ID
    assert [(p.field, p.corpus) for p in analysis.indicators] == [("Image", 1), ("CommandLine", 1)]
    assert analysis.indicators[0].line == position(draft(), "Image")[0]
    assert analysis.backtest is not None and analysis.backtest.fires_on_own
    broken = analyse_draft("title: [", SimilarityIndex())
    assert not broken.ok and broken.errors and broken.indicators == []


def test_add_exclusion_keeps_the_layout_and_excludes_the_value() -> None:
    text = draft() + "# a comment the filter keeps\n"
    tuned = add_exclusion(text, "CommandLine", "whoami /all 'x'")
    assert tuned.endswith("# a comment the filter keeps\n")
    rule = parse_rule(tuned)
    assert rule.conditions == ["selection and not 1 of filter_*"]
    assert [(e.field, e.value) for e in rule.exclusions] == [("CommandLine", "whoami /all 'x'")]
    evaluator = Evaluator([rule])
    assert not evaluator.match_ids({**WHOAMI, "CommandLine": "whoami /all 'x'"})
    assert evaluator.match_ids(WHOAMI)
    # Tuning again adds a second filter under the same condition.
    again = parse_rule(add_exclusion(tuned, "User", "SYSTEM"))
    assert again.conditions == rule.conditions and len(again.exclusions) == 2


def test_add_exclusion_on_flow_style_falls_back_to_a_dump() -> None:
    text = (
        f"title: t\nid: {RULE_ID}\nlogsource: {{product: windows}}\n"
        "detection: {sel: {a: 1}, condition: sel or sel}\n"
    )
    rule = parse_rule(add_exclusion(text, "User", "SYSTEM"))
    assert rule.conditions == ["(sel or sel) and not 1 of filter_*"]


def test_tuned_condition() -> None:
    assert tuned_condition("a and not 1 of filter_*") == "a and not 1 of filter_*"
    assert tuned_condition("a or b") == "(a or b) and not 1 of filter_*"


def test_a_sample_path_outside_the_corpus_is_not_read(corpus: Path, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"outside-{uuid.uuid4()}.json"
    outside.write_text('{"EventID": 1}\n')
    info = corpus / "regression_data" / "rules" / "whoami" / "info.yml"
    named = f"regression_data/rules/whoami/{RULE_ID}.evtx"
    info.write_text(info.read_text().replace(named, f"../{outside.stem}.evtx"))
    assert (corpus / f"../{outside.stem}.json").resolve() == outside.resolve()
    (info.parent / f"{RULE_ID}.json").unlink()
    regression = load_regression_set(corpus)
    assert [s.rule_ids for s in regression.samples] == [(OTHER_ID,)]
    outside.unlink()


def test_an_alias_bomb_is_a_problem_not_a_hang() -> None:
    lines = ["title: x", "id: " + RULE_ID, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\nlogsource: {product: windows}\n"
    problem = parse_draft(text)[1][0]
    assert problem.code == "unsafe-document"
    assert len(SourceMap(text).values) < 100


def test_add_exclusion_quotes_a_hostile_field_name() -> None:
    tuned = add_exclusion(draft(), "Odd: name\n    condition: x", "v")
    rule = parse_rule(tuned)
    assert rule.conditions == ["selection and not 1 of filter_*"]
    assert [(e.field, e.value) for e in rule.exclusions] == [("Odd: name\n    condition: x", "v")]


@pytest.mark.parametrize("value", ["C:\\x*y", "a?b", "a\\*b", "a\\\\b", "end\\", "plain"])
def test_an_excluded_value_is_matched_literally(value: str) -> None:
    tuned = parse_rule(add_exclusion(draft(), "CommandLine", f"whoami /all {value}"))
    evaluator = Evaluator([tuned])
    assert not evaluator.match_ids({**WHOAMI, "CommandLine": f"whoami /all {value}"})
    assert evaluator.match_ids({**WHOAMI, "CommandLine": f"whoami /all {value}x"})
