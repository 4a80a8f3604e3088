"""Where things are, for every test tier."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "support" / "fixtures"
SHARED = ROOT.parent / "shared"
