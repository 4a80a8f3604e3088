"""The wheel carries everything the tool reads at run time: schemas, catalog data, rules, and
the top-level templates/ folder (as xinf_planner._templates)."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from support.paths import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed: {proc.stderr[-2000:]}")
    (wheel,) = out.glob("xinf_plan-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def test_wheel_ships_templates_and_data(unpacked_wheel):
    pkg = unpacked_wheel / "xinf_planner"
    for rel in [
        "core/engines.yaml",
        "core/memory/constants.yaml",
        "core/serving/constants.yaml",
        "_templates/render/python.py.tmpl",
        "core/schemas/plan.schema.json",
        "core/schemas/inventory.schema.json",
        "core/schemas/intent.schema.json",
        "core/catalog/data/models.yaml",
        "core/rules.yaml",
    ]:
        assert (pkg / rel).is_file(), rel


def test_installed_wheel_plans_and_renders_without_the_source_tree(unpacked_wheel, tmp_path):
    """Run from the unpacked wheel alone (no repo on sys.path, no editable finder)."""
    site_packages = sysconfig.get_paths()["purelib"]
    plan = tmp_path / "plan.yaml"
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(unpacked_wheel)!r}, {site_packages!r}]\n"
        "import xinf_planner, xinf_planner.shell.templates as t\n"
        f"assert xinf_planner.__file__.startswith({str(unpacked_wheel)!r}), xinf_planner.__file__\n"
        "print(t.templates_dir())\n"
        "from xinf_planner.cli.main import main\n"
        f"sys.argv = ['xinf-plan', 'plan', '--hardware', {str(EXAMPLES / 'hosts' / '1xt4.yaml')!r},"
        f" '--model', 'deepseek-r1-distill-qwen:7', '-o', {str(plan)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        f"sys.argv = ['xinf-plan', 'render', {str(plan)!r}, '--as', 'shell']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
    )
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert Path(first) == unpacked_wheel / "xinf_planner" / "_templates"
    assert "xinference launch" in proc.stdout
