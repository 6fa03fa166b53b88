"""The Sigma engine: plain Python, no Django.

Parse Sigma YAML into dataclasses (:mod:`rules.parse`), extract stages, exclusions and
indicators (:mod:`rules.extract`), resolve ATT&CK and logsource facts
(:mod:`rules.attack`, :mod:`rules.taxonomy`), evaluate events (:mod:`rules.evaluate`) and
convert rules into SIEM queries (:mod:`rules.convert`). Errors live in :mod:`rules.errors`.
"""
