"""Every example inventory planned, estimated and rendered gives the recorded bytes
(tools/golden.py holds the sweep; `python tools/golden.py --write` records a deliberate change)."""

from __future__ import annotations

import importlib.util
import json

from support.paths import ROOT


def _golden():
    spec = importlib.util.spec_from_file_location("golden", ROOT / "tools" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outputs_match_the_manifest(monkeypatch):
    golden = _golden()
    monkeypatch.chdir(ROOT)
    want = json.loads(golden.MANIFEST.read_text(encoding="utf-8"))
    got = golden.sweep()
    assert set(got) == set(want)
    changed = sorted(k for k in want if want[k] != got[k])
    assert not changed, f"{len(changed)} outputs changed, e.g. {changed[:5]}"
