"""The import hooks of ``_tandem_drum``: who answers to ``datarobot_drum`` and to ``drum``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import _tandem_drum
import tandem.cli


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """Forget every ``datarobot_drum`` module and the finders this test adds."""
    saved_modules = {k: v for k, v in sys.modules.items() if k.startswith("datarobot_drum")}
    saved_meta = list(sys.meta_path)
    for name in saved_modules:
        del sys.modules[name]
    yield
    for name in [k for k in sys.modules if k.startswith("datarobot_drum")]:
        del sys.modules[name]
    sys.modules.update(saved_modules)
    sys.meta_path[:] = saved_meta


def fake_drum(root: Path) -> Path:
    """A stand-in for DataRobot's package: its entry point records what ran."""
    entry = root / "datarobot_drum" / "drum" / "entry_point.py"
    entry.parent.mkdir(parents=True)
    (root / "datarobot_drum" / "__init__.py").write_text("REAL = True\n")
    (entry.parent / "__init__.py").write_text("")
    entry.write_text(
        "CALLS = []\n\ndef run_drum_server():\n    CALLS.append('drum')\n    return 7\n"
    )
    return root


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["drum", "server", "--code-dir", "x"], "server"),
        (["drum", "--verbose", "fit"], "fit"),
        (["drum"], None),
    ],
)
def test_subcommand_is_the_first_non_option(argv: list[str], expected: str | None) -> None:
    assert _tandem_drum.subcommand(argv) == expected


def test_compat_package_serves_when_drum_is_absent(clean_modules: None) -> None:
    _tandem_drum.install()
    import datarobot_drum
    from datarobot_drum.drum.enum import TargetType

    assert _tandem_drum.is_compat(datarobot_drum.__file__)
    from tandem.core.model import TargetType as TandemTargetType

    assert TargetType is TandemTargetType


def test_real_package_wins_over_the_compat_one(
    clean_modules: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(fake_drum(tmp_path)))
    _tandem_drum.install()
    import datarobot_drum

    assert datarobot_drum.REAL is True
    assert not _tandem_drum.is_compat(datarobot_drum.__file__)


def test_a_finder_registered_later_still_wins(clean_modules: None, tmp_path: Path) -> None:
    """An editable DRUM's finder appended after ours is asked before the compat package."""
    import importlib.machinery

    root = fake_drum(tmp_path)

    class Late:
        def find_spec(self, name: str, path: object = None, target: object = None) -> object:
            if name != "datarobot_drum":
                return None
            return importlib.machinery.PathFinder.find_spec(name, [str(root)])

    _tandem_drum.install()
    sys.meta_path.append(Late())
    import datarobot_drum

    assert datarobot_drum.REAL is True


def test_drum_script_routes_server_and_score_to_tandem(
    clean_modules: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(fake_drum(tmp_path)))
    seen: list[tuple[object, str]] = []
    monkeypatch.setattr(
        tandem.cli, "main", lambda argv=None, prog="tandem": seen.append((argv, prog)) or 0
    )
    _tandem_drum.install()
    from datarobot_drum.drum import entry_point

    monkeypatch.setattr(sys, "argv", ["drum", "server", "--code-dir", "m"])
    assert entry_point.run_drum_server() == 0
    assert seen == [(None, "drum")]
    monkeypatch.setattr(sys, "argv", ["drum", "fit", "--code-dir", "m"])
    assert entry_point.run_drum_server() == 7
    assert entry_point.CALLS == ["drum"]


def test_passthrough_leaves_drums_script_alone(
    clean_modules: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(fake_drum(tmp_path)))
    monkeypatch.setenv(_tandem_drum.PASSTHROUGH_ENV, "1")
    monkeypatch.setattr(sys, "argv", ["drum", "server"])
    _tandem_drum.install()
    from datarobot_drum.drum import entry_point

    assert entry_point.run_drum_server() == 7


def test_an_unknown_drum_entry_point_fails_loudly(
    clean_modules: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_drum(tmp_path)
    (root / "datarobot_drum" / "drum" / "entry_point.py").write_text("def other():\n    pass\n")
    monkeypatch.syspath_prepend(str(root))
    _tandem_drum.install()
    with pytest.raises(ImportError, match="cannot find run_drum_server"):
        import datarobot_drum.drum.entry_point  # noqa: F401


def test_drum_only_subcommands_say_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert tandem.cli.drum_main(["perf-test", "--code-dir", "m"]) == 2
    assert capsys.readouterr().err == (
        "drum: error: 'drum perf-test' is DataRobot's DRUM, which is not installed here "
        "(Tandem runs 'drum server' and 'drum score'): pip install datarobot-drum\n"
    )
