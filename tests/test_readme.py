"""README.md must stay true: its Python snippets run, and its commands name real options."""
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang):
    """Contents of the fenced blocks whose info string is ``lang`` ("" for bare fences)."""
    blocks, current, info = [], None, None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_python_snippets_run_in_order(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    blocks = [b for b in _blocks("python") if "tn.diagnostics.lr_find" not in b]
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "curves.png").exists() and (tmp_path / "ckpt.safetensors").exists()


def test_cli_lines_in_readme_parse():
    """Every `tensornet ...` line of the README parses with the real argument parser."""
    from tensornet.cli import build_parser
    parser = build_parser()
    lines = [line.split("#")[0].strip() for block in _blocks("") for line in block.splitlines()]
    commands = [line for line in lines if line.startswith("tensornet ")]
    assert len(commands) >= 5
    for command in commands:
        parser.parse_args(command.split()[1:])


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in README.read_text() and "test-command" in ci
    out = subprocess.run(
        ["awk", r"/<!-- test-command -->/ {getline; while ($0 ~ /^```/ || $0 ~ /^[[:space:]]*$/) "
                r"getline; print; exit}", str(README)], capture_output=True, text=True, check=True)
    assert "pytest" in out.stdout and "pip install" in out.stdout


def test_mpiexec_lines_in_readme_parse():
    """The `tensornet ...` part of every `mpiexec ... tensornet ...` line parses too."""
    from tensornet.cli import build_parser
    parser = build_parser()
    lines = [line.split("#")[0].strip() for block in _blocks("") for line in block.splitlines()]
    commands = [line.split(" tensornet ", 1)[1] for line in lines
                if line.startswith("mpiexec ") and " tensornet " in line]
    assert len(commands) >= 3
    for command in commands:
        args = parser.parse_args(command.split())
        assert args.command == "train" and args.distributed
