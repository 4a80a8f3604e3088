import subprocess
import sys

import pytest

from xinf_planner.cli.main import COMMANDS

HEAVY = ("xinference_client", "xinference", "pynvml", "torch", "jsonschema", "httpx", "requests")


def _modules_after(code: str) -> set[str]:
    marker = "--- loaded modules ---"
    out = subprocess.run(
        [sys.executable, "-c", code + f"\nimport sys\nprint({marker!r})\nprint('\\n'.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split(marker, 1)[1].split())


def test_help_imports_nothing_heavy():
    mods = _modules_after(
        "import sys\nsys.argv=['xinf-plan','--help']\n"
        "from xinf_planner.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    assert "xinf_planner.cli.main" in mods
    loaded = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert loaded == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_is_light(name):
    """`xinf-plan CMD --help` works, shows an example, and pulls neither the client nor NVML."""
    proc = subprocess.run([sys.executable, "-m", "xinf_planner", name, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: xinf-plan {name}") and "example" in proc.stdout.lower()
    mods = _modules_after(
        f"import sys\nsys.argv=['xinf-plan','{name}','--help']\n"
        "from xinf_planner.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    loaded = sorted(m for m in mods if m.split(".")[0] in ("xinference_client", "xinference", "pynvml", "torch"))
    assert loaded == []


def test_version_and_unknown_command(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and "xinf-plan" in out
    code, _, err = run_cli("no-such-command")
    assert code == 2 and "no-such-command" in err
