"""Unit tier: reading and rewriting DRUM_SERVER_TYPE (and any runtime parameter) in env files
(tandem.ops.envfile)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tandem.ops.envfile import (
    apply_param,
    apply_server_type,
    decode,
    effective_assignment,
    encode,
    find_assignments,
    read_param,
    read_server_type,
    rewrite_param,
    rewrite_server_type,
    unified_diff,
)

PREFIXED = "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"


def rewrite(text: str, stack: str = "flask") -> str:
    return rewrite_server_type(text, stack).new_text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi",
            "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=flask",
        ),
        ("DRUM_SERVER_TYPE=fastapi", "DRUM_SERVER_TYPE=flask"),
        ("DRUM_SERVER_TYPE=", "DRUM_SERVER_TYPE=flask"),
        ("DRUM_SERVER_TYPE='fastapi'", "DRUM_SERVER_TYPE='flask'"),
        ('DRUM_SERVER_TYPE="fastapi"', 'DRUM_SERVER_TYPE="flask"'),
        ("export DRUM_SERVER_TYPE=fastapi", "export DRUM_SERVER_TYPE=flask"),
        ("  export\tDRUM_SERVER_TYPE=fastapi", "  export\tDRUM_SERVER_TYPE=flask"),
        ("DRUM_SERVER_TYPE = fastapi", "DRUM_SERVER_TYPE = flask"),
        ("DRUM_SERVER_TYPE=fastapi  # canary", "DRUM_SERVER_TYPE=flask  # canary"),
        ("DRUM_SERVER_TYPE='fastapi' # canary", "DRUM_SERVER_TYPE='flask' # canary"),
        (
            """MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE='{"type": "string", "payload": "fastapi"}'""",
            """MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE='{"type": "string", "payload": "flask"}'""",
        ),
        (
            """MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE={"type":"string","payload":"fastapi"}""",
            """MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE={"type":"string","payload":"flask"}""",
        ),
        (
            r'MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE="{\"type\":\"string\",\"payload\":\"fastapi\"}"',
            r'MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE="{\"type\":\"string\",\"payload\":\"flask\"}"',
        ),
    ],
)
def test_rewrites_the_value_keeping_the_form(line: str, expected: str) -> None:
    assert rewrite(f"A=1\n{line}\nB=2\n") == f"A=1\n{expected}\nB=2\n"


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("DRUM_SERVER_TYPE=Flask", "flask"),
        ("DRUM_SERVER_TYPE='gunicorn'  # old", "gunicorn"),
        (
            """MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE='{"type": "string", "payload": "uvicorn"}'""",
            "uvicorn",
        ),
        ("export DRUM_SERVER_TYPE=fastapi # x", "fastapi"),
        ("DRUM_SERVER_TYPE=", None),
    ],
)
def test_reads_the_value(line: str, value: str | None) -> None:
    assert read_server_type(line + "\n") == value


def test_lines_that_only_look_alike_are_left_alone() -> None:
    text = (
        "# MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi (commented out)\n"
        "DRUM_SERVER_TYPE_OLD=fastapi\n"
        "MY_DRUM_SERVER_TYPE=fastapi\n"
        "echo DRUM_SERVER_TYPE=fastapi\n"
    )
    change = rewrite_server_type(text, "flask")
    assert find_assignments(text) == []
    assert change.appended
    assert change.new_text == text + f"{PREFIXED}=flask\n"


def test_prefixed_variable_wins_and_both_are_rewritten() -> None:
    text = f"DRUM_SERVER_TYPE=gunicorn\n{PREFIXED}=fastapi\n"
    assert read_server_type(text) == "fastapi"
    found = effective_assignment(text)
    assert found is not None and (found.key, found.line_no) == (PREFIXED, 2)
    change = rewrite_server_type(text, "flask")
    assert change.new_text == f"DRUM_SERVER_TYPE=flask\n{PREFIXED}=flask\n"
    assert change.changed_lines == (1, 2)
    assert not change.appended


def test_last_assignment_wins() -> None:
    text = "DRUM_SERVER_TYPE=flask\nDRUM_SERVER_TYPE=fastapi\n"
    assert read_server_type(text) == "fastapi"
    assert rewrite(text, "gunicorn") == "DRUM_SERVER_TYPE=gunicorn\nDRUM_SERVER_TYPE=gunicorn\n"


def test_bare_variable_only_is_rewritten_without_adding_the_prefixed_one() -> None:
    text = "# comment\nDRUM_SERVER_TYPE=fastapi\n"
    assert rewrite(text) == "# comment\nDRUM_SERVER_TYPE=flask\n"


def test_absent_variable_is_appended() -> None:
    assert rewrite("A=1\n") == f"A=1\n{PREFIXED}=flask\n"
    assert rewrite("A=1") == f"A=1\n{PREFIXED}=flask\n"
    assert rewrite("") == f"{PREFIXED}=flask\n"
    assert rewrite("A=1\r\nB=2\r\n") == f"A=1\r\nB=2\r\n{PREFIXED}=flask\r\n"
    assert rewrite("export A=1\n") == f"export A=1\nexport {PREFIXED}=flask\n"


def test_every_other_byte_is_kept() -> None:
    text = (
        "\ufeff# héllo wörld\r\n"
        "\r\n"
        "   INDENTED = yes  \r\n"
        "DRUM_SERVER_TYPE=fastapi\r\n"
        "QUOTED='multi word # not a comment'\r\n"
        "TAIL=no newline at end"
    )
    new = rewrite(text)
    assert new == text.replace("DRUM_SERVER_TYPE=fastapi\r\n", "DRUM_SERVER_TYPE=flask\r\n")


def test_undecodable_bytes_round_trip() -> None:
    data = b"LATIN1=caf\xe9\nDRUM_SERVER_TYPE=fastapi\n\xff\xfe\n"
    new = encode(rewrite(decode(data)))
    assert new == data.replace(b"=fastapi", b"=flask")


def test_unchanged_when_already_set() -> None:
    change = rewrite_server_type("DRUM_SERVER_TYPE=flask\n", "flask")
    assert not change.changed and change.changed_lines == ()


def test_unified_diff() -> None:
    old = "A=1\nB=2\nDRUM_SERVER_TYPE=fastapi\nC=3\nD=4\n"
    diff = unified_diff(old, rewrite(old), "drum.env")
    assert diff == (
        "--- drum.env\n+++ drum.env\n@@ -2,3 +2,3 @@\n B=2\n"
        "-DRUM_SERVER_TYPE=fastapi\n+DRUM_SERVER_TYPE=flask\n C=3"
    )


def test_apply_writes_atomically_with_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "drum.env"
    original = b"# settings\nTARGET_TYPE=regression\nDRUM_SERVER_TYPE=fastapi\n"
    path.write_bytes(original)
    os.chmod(path, 0o640)
    applied = apply_server_type(path, "flask", now=0.0)
    assert applied.path == path.resolve()
    assert applied.backup == tmp_path / "drum.env.bak-19700101T000000Z"
    assert applied.backup.read_bytes() == original
    assert path.read_bytes() == original.replace(b"=fastapi", b"=flask")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(applied.backup.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drum.env", applied.backup.name]

    again = apply_server_type(path, "gunicorn", now=0.0)
    assert again.backup == tmp_path / "drum.env.bak-19700101T000000Z-1"
    assert again.backup.read_bytes() == original.replace(b"=fastapi", b"=flask")
    assert read_server_type(path.read_text()) == "gunicorn"


def test_apply_follows_a_symbolic_link(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    real.write_text("DRUM_SERVER_TYPE=fastapi\n")
    link = tmp_path / "drum.env"
    link.symlink_to(real)
    applied = apply_server_type(link, "flask")
    assert link.is_symlink()
    assert real.read_text() == "DRUM_SERVER_TYPE=flask\n"
    assert applied.backup.parent == tmp_path and applied.backup.name.startswith("real.env.bak-")


# -- any runtime parameter (tandem fleet writes DRUM_FASTAPI_CANARY_PERCENT) -------------------

CANARY = "DRUM_FASTAPI_CANARY_PERCENT"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT=5\n", "…=25"),
        ("export DRUM_FASTAPI_CANARY_PERCENT='5'  # canary\n", "export …='25'  # canary"),
        (
            'MLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT={"type":"numeric","payload":5}\n',
            '…={"type":"numeric","payload":25}',
        ),
        (
            'MLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT={"type": "string", "payload": "5"}\n',
            '…={"type": "string", "payload": "25"}',
        ),
    ],
)
def test_any_parameter_is_rewritten_in_its_own_form(text: str, expected: str) -> None:
    key = "DRUM_FASTAPI_CANARY_PERCENT" if "export" in text else f"MLOPS_RUNTIME_PARAM_{CANARY}"
    change = rewrite_param("MLOPS_DEPLOYMENT_ID=a\n" + text + "X=1\n", CANARY, "25")
    assert change.new_text == "MLOPS_DEPLOYMENT_ID=a\n" + expected.replace("…", key) + "\nX=1\n"
    assert read_param(change.new_text, CANARY) == "25"


def test_a_missing_parameter_is_appended_and_other_parameters_are_not_touched() -> None:
    text = "DRUM_SERVER_TYPE=flask\nMLOPS_DEPLOYMENT_ID=a"
    change = rewrite_param(text, CANARY, "10")
    assert change.appended
    assert change.new_text == text + f"\nMLOPS_RUNTIME_PARAM_{CANARY}=10\n"
    assert read_server_type(change.new_text) == "flask"
    assert read_param(text, CANARY) is None
    assert read_param(text, "MLOPS_DEPLOYMENT_ID") == "a"  # a plain variable reads as well
    assert read_param("MLOPS_RUNTIME_PARAM_X=1\nX=2\n", "X") == "1"  # the prefixed one wins


def test_apply_param_without_backup_leaves_an_unchanged_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "drum.env"
    path.write_text(f"{CANARY}=5\n")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    applied = apply_param(path, CANARY, "5", backup=False)
    assert applied.backup is None and not applied.change.changed
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    applied = apply_param(path, CANARY, "50", backup=False)
    assert applied.backup is None and path.read_text() == f"{CANARY}=50\n"
    assert [p.name for p in tmp_path.iterdir()] == ["drum.env"]
