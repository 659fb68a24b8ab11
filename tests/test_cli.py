"""The command line: help with examples and the same prog both ways, --version, suggestions, submit.sh, README."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from le_ray.cli.console import main
from le_ray.cli.commands import COMMANDS
from le_ray.config import load_config
from le_ray.data.synthetic import expected_condition_rate

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_prog_examples_and_exits_0(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: le-ray {name}") and "examples:" in out
    assert COMMANDS[name].examples[0][0] in out
    for env in COMMANDS[name].environment:
        assert env in out


@pytest.mark.parametrize("name", ["repeats", "run", "prepare", "tune"])
def test_python_m_entry_shows_the_same_prog(name):
    out = subprocess.run([sys.executable, "-m", COMMANDS[name].module, "--help"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.startswith(f"usage: le-ray {name}")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_argument_has_help(name):
    import importlib

    entry = importlib.import_module(COMMANDS[name].module)
    module = importlib.import_module(entry.main.__module__)  # the runner behind a thin entry point
    parser = module._config_parser() if name == "config" else module._parser()
    missing = [a.dest for a in parser._actions if a.help in (None, "") and a.dest != "help"]
    assert not missing, f"le-ray {name}: arguments without help: {missing}"


def test_top_level_help_version_and_help_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "usage: le-ray" in out and "``" not in out
    assert all(name in out for name in COMMANDS) and "le-ray help <command>" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.match(r"le_ray \d+\.\d+\.\d+", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["help", "report"])
    assert capsys.readouterr().out.startswith("usage: le-ray report")


def test_misspelled_command_profile_key_and_loss_get_suggestions(capsys):
    assert main(["repats"]) == 2
    assert 'did you mean "repeats"' in capsys.readouterr().err
    assert main(["config", "show", "--profile", "quikstart"]) == 2
    assert 'did you mean "quickstart"' in capsys.readouterr().err
    assert main(["config", "show", "--set", "training.epochz=3"]) == 2
    assert 'did you mean "epochs"' in capsys.readouterr().err
    assert main(["config", "show", "--set", "training.loss_mode=focl"]) == 2
    assert 'did you mean "focal"' in capsys.readouterr().err


def test_config_profiles_lists_descriptions_and_parents(capsys):
    assert main(["config", "profiles"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("quickstart "))
    assert "README's main job" in line and "(extends small_net)" in line


def test_config_show_effective_prints_each_loss(capsys):
    import json

    assert main(["config", "show", "--profile", "quickstart", "--effective"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"bce", "localized_entropy", "focal"}
    assert shown["localized_entropy"]["cross_batch"]["enabled"] is True


def test_submit_sh_parses_its_own_options_before_the_separator():
    out = subprocess.run(["bash", "jobs/submit.sh", "--no-wait", "--address", "http://127.0.0.1:1", "--dry-run", "--",
                          "--profile", "quickstart", "--results-dir", "/tmp/r"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "ray job submit --address http://127.0.0.1:1" in out and "--no-wait --" in out
    assert out.strip().endswith("python -m le_ray.repeats --profile quickstart --results-dir /tmp/r")
    bad = subprocess.run(["bash", "jobs/submit.sh", "--wat", "--", "x"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "unknown option --wat" in bad.stderr
    helped = subprocess.run(["bash", "jobs/submit.sh", "--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0 and "--no-wait" in helped.stdout


def test_readme_quickstart_numbers_come_from_the_profile():
    text = (REPO / "README.md").read_text()
    cfg = load_config(profile="quickstart")
    ads, rows = re.search(r"(\d+) synthetic ads × ([\d,]+) rows", text).groups()
    assert int(ads) == cfg.synthetic.num_conditions and int(rows.replace(",", "")) == cfg.synthetic.samples_per_condition
    epochs = int(re.search(r"small net, (\d+) epochs", text).group(1))
    assert all(cfg.training_for(loss).epochs == epochs for loss in cfg.losses)
    assert int(re.search(r"(\d+) seeds, with the data redrawn", text).group(1)) == cfg.repeats.num_runs
    rarest = float(re.search(r"mean click\s+rate of about ([\d.]+) %", text).group(1)) / 100
    expected = expected_condition_rate(min(cfg.synthetic.uniform_log10_means), cfg.synthetic.uniform_log10_std)
    assert rarest == pytest.approx(expected, rel=0.05)
    assert "BCE, LE and focal" in text and set(cfg.losses) == {"bce", "localized_entropy", "focal"}
