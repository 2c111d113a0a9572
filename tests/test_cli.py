"""The CLI: help with examples everywhere, exit codes, no tracebacks for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlmem.cli import app, main

COMMANDS = [[], ["recipe"], ["recipe", "ls"], ["recipe", "show"], ["recipe", "validate"], ["prepare-data"],
            ["prepare-data", "synthetic"], ["train"], ["eval"], ["eval", "vsibench"], ["export"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "vlmem")
def test_help(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
    if cmd and cmd[-1] not in ("recipe", "prepare-data", "eval"):
        assert "Example" in out or "example" in out


def test_every_leaf_command_has_an_example():
    import typer.main

    group = typer.main.get_command(app)

    def leaves(cmd, path=()):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from leaves(sub, (*path, name))
        else:
            yield path, cmd

    for path, cmd in leaves(group):
        assert "Example" in (cmd.help or ""), f"vlmem {' '.join(path)} --help has no example"


def test_bad_recipe_exits_2_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model.memory]\nkindd = "dual"\n')
    assert main(["recipe", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "kindd" in err and "Traceback" not in err


def test_bad_set_exits_2(capsys):
    assert main(["recipe", "show", "tiny/base", "--set", "train.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "train.lrr" in err and "valid keys" in err


def test_missing_argument_is_a_usage_error(capsys):
    assert main(["recipe", "show"]) == 2


def test_show_prints_resolved_toml(capsys):
    assert main(["recipe", "show", "tiny/phase1", "--set", "train.lr=5e-6"]) == 0
    out = capsys.readouterr().out
    assert "lr = 5e-06" in out and 'name = "tiny-phase1"' in out and "# hash = " in out


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "vlmem", "recipe", "validate", "tiny/base"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
