"""The README's promises: the embedding example runs, the CI reads the real test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_embedding_example_runs_and_prints_what_it_promises(tmp_path: Path) -> None:
    (example,) = re.findall(r"## Embed it.*?```python\n(.*?)```", README, re.S)
    script = tmp_path / "embed.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "power: 1.330e-03 W"
    assert lines[1] == "wavelength: 2000.0 nm is outside the allowed range 400 to 1100 nm"
    assert lines[2] == "all stopped: True"


def test_ci_runs_the_readme_test_command() -> None:
    command = subprocess.run(
        ["awk", *_awk_program()], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    assert command.endswith("python -m pytest")
    assert command in README


def _awk_program() -> list[str]:
    ci = (ROOT / ".ci" / "run").read_text()
    (program,) = re.findall(r"awk '(.*?)' README.md", ci, re.S)
    return [program, "README.md"]


def test_the_lab_bench_example_is_a_valid_bench() -> None:
    from runtime.config import parse_config
    from supervisors.bench import build_tree

    (example,) = re.findall(r"```toml\n(.*?)```", README, re.S)
    config = parse_config(example, "README.md")
    tree = build_tree(config, {})
    assert [c.name for c in tree.children] == [
        "ell14.supervisor",
        "esp300.supervisor",
        "maitai.supervisor",
        "power_meter.supervisor",
        "camera.supervisor",
        "pipeline.supervisor",
    ]
    assert str(config.storage.directory) == "/data/benchd-runs"
    assert (config.storage.min_free_mb, config.storage.ring_slots) == (20000.0, 16)
