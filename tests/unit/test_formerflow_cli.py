"""``formerflow``, the one command line: commands, --version, the same options everywhere, near-match suggestions."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from flows.cli import COMMANDS, HANDLERS, main
from tasks.domains.netflow.params import FlowDatasetSpec
from tasks.domains.netflow.records import SchemaError, validate_columns

FORMERFLOW = Path(sys.executable).parent / "formerflow"


def test_version_is_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"formerflow {metadata.version('formerflow')}"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"  {command} " in out
    assert main([]) == 2  # no command: the help on stderr and a usage error
    assert "commands:" in capsys.readouterr().err


def test_every_command_but_ui_has_a_handler():
    assert set(HANDLERS) | {"ui"} == set(COMMANDS)


@pytest.mark.parametrize(("argv", "expected"), [
    (["rn"], "unknown command 'rn' (did you mean 'run'?)"),
    (["trian", "netflow"], "unknown command 'trian' (did you mean 'train'?)"),
    (["stage", "trian", "netflow"], "unknown stage 'trian' (did you mean 'train'?)"),
    (["stage", "train", "netflw"], "unknown domain 'netflw' (did you mean 'netflow'?)"),
    (["train", "netflw"], "unknown domain 'netflw' (did you mean 'netflow'?)"),
    (["score", "finanse", "--input", "x", "--output", "y.parquet"], "(did you mean 'finance'?)"),
    (["lineage", "eg@champion"], "unknown domain 'eg' (did you mean 'eeg'?)"),
    (["run", "turbulance"], "unknown domain 'turbulance' (did you mean 'turbulence'?)"),
    (["sweep", "netflw"], "unknown domain 'netflw' (did you mean 'netflow'?)"),
])
def test_unknown_names_suggest_the_nearest(project, capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback


def test_params_keys_and_profiles_suggest_the_nearest(project, capsys):
    assert main(["params", "--set", "train.netflow.epoch=3"]) == 2
    assert "train.netflow.epoch: Extra inputs are not permitted (did you mean 'epochs'?)" in capsys.readouterr().err
    assert main(["params", "--set", "compress.netflow.distill.studnt=3"]) == 2
    assert "(did you mean 'student'?)" in capsys.readouterr().err
    assert main(["params", "--profile", "botiott"]) == 2
    err = capsys.readouterr().err
    assert "profile 'botiott' not found" in err and "(did you mean 'botiot'?)" in err


def test_missing_netflow_column_names_the_near_one():
    spec = FlowDatasetSpec()
    names = [("IN_BYTE" if c == "IN_BYTES" else c) for c in [*spec.numeric_fields, *spec.categorical_fields,
                                                               spec.label_column]]
    with pytest.raises(SchemaError, match=r"IN_BYTES \(did you mean 'IN_BYTE'\?\)"):
        validate_columns(names, spec, "flows.csv")


def test_the_same_params_options_on_every_command(capsys):
    """--profile and --set (and -q/-v) mean the same on run, stage, score, status, lineage, params and sweep."""
    for command in ("run", "stage", "score", "status", "lineage", "params", "sweep"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: formerflow {command}"), out[:80]
        for option in ("--profile", "--set KEY=VALUE", "-q, --quiet", "-v, --verbose"):
            assert option in out, (command, option)


def test_the_console_script_and_the_old_aliases(project):
    """The installed `formerflow` runs; `python -m tasks` (what dvc.yaml calls) is the same code."""
    out = subprocess.run([str(FORMERFLOW), "--version"], capture_output=True, text=True, timeout=120, cwd=project)
    assert out.returncode == 0 and out.stdout.startswith("formerflow "), out.stderr
    old = subprocess.run([sys.executable, "-m", "tasks", "params", "--set", "train.netflow.epoch=3"],
                         capture_output=True, text=True, timeout=120, cwd=project)
    assert old.returncode == 2 and "(did you mean 'epochs'?)" in old.stderr
