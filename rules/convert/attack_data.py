"""Offline ATT&CK names for pySigma's Elastic ``siem_rule*`` formats.

Those formats name tactics and techniques through ``sigma.data.mitre_attack``, which otherwise
downloads the STIX bundle from GitHub on first use: offline (and on every fresh machine) that
fails the whole conversion. :func:`use_offline_attack_data` sets the module attributes it
would lazily load from the catalog's offline data (:mod:`rules.attack`), once per process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from rules import attack
from rules.convert.registry import once

_ATTACK_FORMATS = frozenset({"siem_rule", "siem_rule_ndjson"})


def needs_attack_data(output_format: str) -> bool:
    """Whether converting to ``output_format`` reads pySigma's ATT&CK data."""
    return output_format in _ATTACK_FORMATS


class _TechniqueNames(Mapping[str, str]):
    """ATT&CK technique names from the catalog's offline data.

    Iteration covers every current technique and sub-technique (the key set pySigma's
    downloaded data has, and what ``rules.validate`` installs): pySigma's ATT&CK tag validator
    takes its allowed tags from these keys, so a top-level-only set made every validator built
    after a conversion flag each sub-technique tag. Lookups resolve any known id.
    """

    def __getitem__(self, key: str) -> str:
        found = attack.technique(str(key))
        if found is None:
            raise KeyError(key)
        return found.name

    def _ids(self) -> list[str]:
        return sorted({t.id for t in attack.current_techniques()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())


@once
def use_offline_attack_data() -> None:
    """Give pySigma's ATT&CK data module the catalog's offline ATT&CK names (once)."""
    from sigma.data import mitre_attack

    mitre_attack.mitre_attack_tactics = {
        t.id: t.shortname for t in attack.tactics_in_matrix_order()
    }
    mitre_attack.mitre_attack_techniques = _TechniqueNames()
