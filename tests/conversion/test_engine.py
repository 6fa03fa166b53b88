"""rules.convert without Django: registry, every target and pipeline, errors, command lines,
deployable exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sigma.backends.splunk import SplunkBackend
from sigma.plugins import InstalledSigmaPlugins
from sigma.processing.resolver import ProcessingPipelineResolver
from sigma.rule import SigmaRule

from rules import convert as conv
from rules.parse import parse_rule
from tests.conversion.rules_fixtures import (
    FIELDREF_YAML,
    MULTI_YAML,
    PLACEHOLDER_YAML,
    PROCESS_YAML,
    SEED_YAML,
)

REPO = Path(__file__).resolve().parents[2]
ALL_COMBINATIONS = [(t.id, p) for t in conv.TARGETS.values() for p in t.pipelines]


@pytest.fixture(scope="module")
def plugins() -> InstalledSigmaPlugins:
    return InstalledSigmaPlugins.autodiscover()


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("spec", conv.TARGETS.values(), ids=lambda s: s.id)
def test_registry_entries_are_consistent(spec: conv.TargetSpec, plugins) -> None:
    # Target ids are sigma-cli's -t names, so the printed command line works as is.
    assert plugins.backends[spec.id] is spec.backend
    assert set(spec.formats) <= set(spec.backend.formats)
    assert spec.default_pipeline in spec.pipelines
    assert set(spec.pipelines) <= set(conv.PIPELINES)
    assert set(spec.export_formats) <= set(spec.formats)
    assert set(spec.export_formats) <= set(conv.EXPORT_FORMATS)


def test_sigma_pipeline_names_are_sigma_cli_names(plugins) -> None:
    assert set(conv.SIGMA_PIPELINES) <= set(plugins.pipelines)
    for pipe in conv.PIPELINES.values():
        assert set(pipe.sigma_pipelines) <= set(conv.SIGMA_PIPELINES)


def test_importing_the_package_loads_no_backend_and_changes_no_state() -> None:
    """Backends load on first use; pySigma set-up (warning filter) waits for it."""
    script = (
        "import sys, warnings; before = list(warnings.filters); import rules.convert; "
        "print(sorted(m for m in sys.modules if m.startswith('sigma.backends')), "
        "warnings.filters == before)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["[]", "True"], result.stderr


def test_required_targets_are_registered() -> None:
    required = {"splunk", "lucene", "esql", "eql", "opensearch_lucene", "kusto", "loki"}
    assert required <= set(conv.TARGETS)
    assert {"none", "splunk_windows", "splunk_sysmon"} <= set(conv.TARGETS["splunk"].pipelines)
    assert "microsoft_xdr" in conv.TARGETS["kusto"].pipelines
    assert "siem_rule_ndjson" in conv.TARGETS["lucene"].export_formats


# --------------------------------------------------------------------------- acceptance


def test_seed_rule_splunk_windows_pipeline() -> None:
    result = conv.convert(SEED_YAML, "splunk", "splunk_windows")
    assert result.ok, result.error
    query = result.query
    assert isinstance(query, str)
    assert "Microsoft-Windows-PowerShell/Operational" in query
    assert "EventCode=4104" in query
    for value in ("Test-NetConnection", "-ComputerName ", "-port "):
        assert f'ScriptBlockText="*{value}*"' in query
    assert 'NOT (ScriptBlockText IN ("* 443 *", "* 80 *"))' in query
    assert result.sigma_cli_command == (
        "sigma convert -t splunk -p windows-logsources -p splunk_windows rule.yml"
    )


def test_seed_rule_splunk_without_pipeline_has_no_channel() -> None:
    result = conv.convert(SEED_YAML, "splunk", "none")
    assert result.ok
    assert "4104" not in result.query
    assert 'NOT (ScriptBlockText IN ("* 443 *", "* 80 *"))' in result.query
    assert result.sigma_cli_command == "sigma convert -t splunk --without-pipeline rule.yml"


@pytest.mark.parametrize(("target", "pipeline"), ALL_COMBINATIONS)
def test_every_target_and_pipeline_gives_a_query_or_a_reason(target: str, pipeline: str) -> None:
    for text in (SEED_YAML, PROCESS_YAML):
        result = conv.convert(text, target, pipeline)
        assert result.target == target and result.pipeline == pipeline
        assert result.sigma_cli_command.startswith(f"sigma convert -t {target} ")
        assert "pySigma 1.5.1" in result.backend_version
        if result.ok:
            assert result.query and result.error is None
        else:
            assert result.query == "" and result.error and result.error_kind


@pytest.mark.parametrize(
    ("target", "pipeline", "expected"),
    [
        ("splunk", "splunk_sysmon", 'source="WinEventLog:Microsoft-Windows-Sysmon/Operational"'),
        ("splunk", "splunk_cim", "Processes.process_path"),
        ("splunk_spl2", "splunk_windows", "FROM main WHERE"),
        ("lucene", "ecs_windows", "process.executable"),
        ("esql", "ecs_windows", "from * metadata"),
        ("eql", "ecs_windows", "any where process.executable"),
        ("opensearch_lucene", "ecs_windows", "process.executable"),
        ("open_search_ppl", "none", "source=windows-process_creation-*"),
        ("kusto", "microsoft_xdr", "DeviceProcessEvents"),
        ("kusto", "sentinel_asim", "imProcessCreate"),
        ("loki", "none", '{job=~"eventlog|winlog|windows|fluentbit.*"}'),
        ("elastalert", "ecs_windows", "query_string"),
    ],
)
def test_target_specific_queries(target: str, pipeline: str, expected: str) -> None:
    result = conv.convert(PROCESS_YAML, target, pipeline)
    assert result.ok, result.error
    assert expected in result.query


def test_matches_sigma_cli_pipeline_resolution(plugins) -> None:
    """Our pipelines resolve exactly as `sigma convert -p A -p B` (pySigma's resolver)."""
    # Same plugin pipelines, except "sysmon": in this process pySigma's shared @Pipeline
    # instance now builds the test pipeline (see the test above), ours keeps the real one.
    resolver = ProcessingPipelineResolver({**plugins.pipelines, "sysmon": conv.sysmon_pipeline})
    for target, pipeline in ALL_COMBINATIONS:
        pipe = conv.PIPELINES[pipeline]
        reference = plugins.backends[target](
            resolver.resolve(list(pipe.sigma_pipelines)) if pipe.sigma_pipelines else None,
            **dict(conv.TARGETS[target].backend_options),  # as `sigma convert -O k=v`
        )
        for text in (SEED_YAML, PROCESS_YAML):
            ours = conv.convert(text, target, pipeline)
            try:
                theirs = reference.convert_rule(SigmaRule.from_dict(yaml.safe_load(text)))
            except Exception:  # noqa: BLE001 - the error case must fail on our side too
                assert not ours.ok
                continue
            if not ours.fixes:  # a declared fix changes the query on purpose
                assert list(ours.outputs) == theirs


def test_sysmon_survives_pysigmas_shared_pipeline_decorator(plugins) -> None:
    """autodiscover() imports pySigma's test pipeline, which rebinds @Pipeline's shared func."""
    import sigma.pipelines.test  # noqa: F401 - the import is the point

    result = conv.convert(PROCESS_YAML, "splunk", "splunk_sysmon")
    assert "EventCode=1" in result.query
    assert "--disable-pipeline-check" not in result.sigma_cli_command


def test_parsed_rule_input_and_filename() -> None:
    parsed = parse_rule(SEED_YAML, "rules/windows/posh_ps_test_netconnection.yml")
    first = conv.convert(parsed, "lucene")
    second = conv.convert(parsed, "splunk")  # the pipeline of the first must not leak
    assert first.ok and second.ok
    assert "powershell.file.script_block_text" in first.query
    assert "ScriptBlockText" in second.query
    assert first.sigma_cli_command.endswith(" posh_ps_test_netconnection.yml")


def test_multi_condition_rule_gives_a_list() -> None:
    result = conv.convert(MULTI_YAML, "splunk", "none")
    assert result.ok
    assert isinstance(result.query, list) and len(result.query) == 2
    assert result.queries == result.query


# --------------------------------------------------------------------------- errors


def test_placeholder_is_a_clear_error_not_an_exception() -> None:
    result = conv.convert(PLACEHOLDER_YAML, "splunk")
    assert not result.ok
    assert result.error_kind == "placeholder"
    assert "Administrators" in result.error and "|expand" in result.error


def test_fieldref_is_unsupported_by_lucene_but_not_splunk() -> None:
    lucene = conv.convert(FIELDREF_YAML, "lucene")
    assert not lucene.ok and lucene.error_kind == "unsupported"
    assert "field reference" in lucene.error
    assert conv.convert(FIELDREF_YAML, "splunk").ok


def test_table_mapping_error_names_the_log_source() -> None:
    result = conv.convert(SEED_YAML, "kusto", "microsoft_xdr")
    assert not result.ok and result.error_kind == "pipeline"
    assert "category: ps_script" in result.error
    assert "table" in result.error


def test_pipeline_dropping_every_condition_is_explained() -> None:
    text = PLACEHOLDER_YAML.replace("        TargetUserName|expand: '%Administrators%'\n", "")
    result = conv.convert(text, "kusto", "microsoft_xdr")
    assert not result.ok
    assert result.error_kind in {"empty", "pipeline"}


@pytest.mark.parametrize(
    ("text", "kind"),
    [("title: [unclosed", "invalid"), ("title: x\nid: y\n", "sigma"), ("- a\n- b\n", "invalid")],
)
def test_broken_documents_are_errors(text: str, kind: str) -> None:
    result = conv.convert(text, "loki")
    assert not result.ok and result.error_kind == kind


def test_non_sigma_backend_exception_becomes_an_error(monkeypatch) -> None:
    def boom(self, rule, output_format=None, callback=None):
        raise TypeError("backend bug")

    monkeypatch.setattr(SplunkBackend, "convert_rule", boom)
    result = conv.convert(SEED_YAML, "splunk")
    assert not result.ok and result.error_kind == "backend"
    assert "TypeError" in result.error and "backend bug" in result.error


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        (("nope", None, None), "target"),
        (("", None, None), "target"),
        (("splunk", "nope", None), "pipeline"),
        (("splunk", "microsoft_xdr", None), "pipeline"),
        (("kusto", None, "savedsearches"), "format"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(args, parameter: str) -> None:
    with pytest.raises(conv.ConversionParameterError) as info:
        conv.convert(SEED_YAML, *args)
    assert info.value.parameter == parameter
    assert info.value.choices


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("target", "pipeline", "fmt", "expected"),
    [
        ("splunk", "splunk_sysmon", "default",
         "sigma convert -t splunk -p sysmon -p windows-logsources -p splunk_windows r.yml"),
        ("lucene", "none", "siem_rule_ndjson",
         "sigma convert -t lucene --without-pipeline -f siem_rule_ndjson r.yml"),
        ("esql", "ecs_windows", "default",
         "sigma convert -t esql -p ecs_windows --disable-pipeline-check r.yml"),
        ("kusto", "none", "default", "sigma convert -t kusto r.yml"),
        ("loki", "none", "ruler", "sigma convert -t loki -f ruler r.yml"),
    ],
)  # fmt: skip
def test_sigma_cli_command(target: str, pipeline: str, fmt: str, expected: str) -> None:
    assert conv.sigma_cli_command(target, pipeline, fmt, "r.yml") == expected


def test_command_quotes_unsafe_file_names() -> None:
    assert conv.sigma_cli_command("kusto", "none", "default", "a b.yml").endswith("'a b.yml'")


def test_backend_version_names_every_package() -> None:
    version = conv.backend_version("splunk", "splunk_sysmon")
    for name in ("pySigma-backend-splunk", "pySigma-pipeline-sysmon", "pySigma-pipeline-windows"):
        assert name in version
    assert "pySigma 1.5.1" in version


# --------------------------------------------------------------------------- bulk and exports


def test_converter_reuses_one_backend() -> None:
    converter = conv.Converter("splunk", "splunk_windows")
    before = conv.stats.backend_calls
    results = list(converter.convert_many([SEED_YAML, PROCESS_YAML, PLACEHOLDER_YAML]))
    assert conv.stats.backend_calls - before == 3
    assert [r.ok for r in results] == [True, True, False]
    assert converter._backend is not None


def test_reused_loki_backend_numbers_labels_as_a_fresh_one() -> None:
    """The Loki backend counts the labels it adds on the instance; a reused one must not."""
    converter = conv.Converter("loki")
    first, second = converter.convert(FIELDREF_YAML), converter.convert(FIELDREF_YAML)
    assert first.ok and "match_0=" in first.query
    assert second.query == first.query == conv.convert(FIELDREF_YAML, "loki").query


def test_savedsearches_export_matches_the_backend_file() -> None:
    converter = conv.Converter("splunk", "splunk_windows", "savedsearches")
    results = [(str(i), converter.convert(t)) for i, t in enumerate([SEED_YAML, PROCESS_YAML])]
    streamed = "".join(conv.export_chunks("splunk", "savedsearches", results))
    outputs = [o for _, r in results for o in r.outputs]
    assert streamed == converter.backend.finalize(outputs, "savedsearches")
    assert "[Testing Usage of Uncommonly Used Port]" in streamed


def test_savedsearches_export_lists_skipped_rules() -> None:
    converter = conv.Converter("splunk", None, "savedsearches")
    results = [("ok", converter.convert(SEED_YAML)), ("bad", converter.convert(PLACEHOLDER_YAML))]
    streamed = "".join(conv.export_chunks("splunk", "savedsearches", results))
    assert "# 1 rule(s) not exported:" in streamed and "# bad: " in streamed


def test_siem_rule_ndjson_is_offline_and_names_attack() -> None:
    result = conv.convert(SEED_YAML, "lucene", "ecs_windows", "siem_rule_ndjson")
    assert result.ok, result.error
    lines = "".join(conv.export_chunks("lucene", "siem_rule_ndjson", [("x", result)]))
    rules = [json.loads(line) for line in lines.splitlines()]
    assert len(rules) == 1 and rules[0]["rule_id"] == "adf876b3-f1f8-4aa9-a4e4-a64106feec06"
    assert rules[0]["language"] == "lucene"
    threat = rules[0]["threat"][0]
    assert threat["tactic"]["id"] == "TA0011"
    assert threat["technique"][0]["name"] == "Non-Standard Port"


def test_loki_ruler_export_equals_the_backend_yaml() -> None:
    converter = conv.Converter("loki", None, "ruler")
    results = [(str(i), converter.convert(t)) for i, t in enumerate([SEED_YAML, PROCESS_YAML])]
    streamed = "".join(conv.export_chunks("loki", "ruler", results))
    outputs = [o for _, r in results for o in r.outputs]
    assert yaml.safe_load(streamed) == yaml.safe_load(converter.backend.finalize(outputs, "ruler"))
    empty = yaml.safe_load("".join(conv.export_chunks("loki", "ruler", [])))
    assert empty == {"groups": [{"name": "Sigma rules", "rules": []}]}


def test_plain_export_is_one_query_per_line() -> None:
    results = [(t, conv.convert(t, "kusto", "none")) for t in (SEED_YAML, PROCESS_YAML)]
    text = "".join(conv.export_chunks("kusto", "default", results))
    assert text == results[0][1].query + "\n\n" + results[1][1].query + "\n"


def test_export_format_defaults_and_refusals() -> None:
    assert conv.export_format("splunk", None).id == "savedsearches"
    assert conv.export_format("lucene", None).id == "siem_rule_ndjson"
    with pytest.raises(conv.ConversionParameterError) as info:
        conv.export_format("kusto", "savedsearches")
    assert info.value.parameter == "format"
