import os
import stat

import pytest

from xinf_planner.errors import InvalidInput
from xinf_planner.shell.files import write_atomic


def test_unwritable_path_is_one_line_invalid_input(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInput, match="cannot write") as err:
        write_atomic(blocker / "sub" / "plan.yaml", "a: 1\n")  # a folder under a file
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [blocker]  # no temp file left behind


def test_new_files_follow_the_umask_and_existing_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "plan.yaml"
        write_atomic(p, "a: 1\n")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # reviewable by others
        os.chmod(p, 0o640)
        write_atomic(p, "a: 2\n")
        assert stat.S_IMODE(p.stat().st_mode) == 0o640 and p.read_text() == "a: 2\n"
        s = tmp_path / "state.json"
        write_atomic(s, "{}", mode=0o600)
        assert stat.S_IMODE(s.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_cli_output_to_an_unwritable_place_exits_1(run_cli, tmp_path):
    from support.paths import EXAMPLES

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(
        "plan",
        "--hardware",
        EXAMPLES / "hosts" / "1xt4.yaml",
        "--model",
        "deepseek-r1-distill-qwen:1.5",
        "-o",
        blocker / "p.yaml",
    )
    assert code == 1 and err.startswith("error: cannot write") and err.count("\n") == 1
