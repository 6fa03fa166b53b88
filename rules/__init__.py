"""The Sigma engine: plain Python, no Django.

Parse Sigma YAML into dataclasses (:mod:`rules.parse`), extract stages, exclusions and
indicators (:mod:`rules.extract`), resolve ATT&CK and logsource facts
(:mod:`rules.attack`, :mod:`rules.taxonomy`), and evaluate events (:mod:`rules.evaluate`).
"""
