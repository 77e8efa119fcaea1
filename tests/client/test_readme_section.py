"""README's "From another terminal": its commands and its Python run against a daemon."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, Daemon

SECTION = (ROOT / "README.md").read_text().split("## From another terminal", 1)[1].split("\n## ")[0]


def test_the_readme_commands_and_python_work(process_daemon: Daemon, tmp_path: Path) -> None:
    (commands,) = re.findall(r"```sh\n(.*?)```", SECTION, re.S)
    env = {**os.environ, "BENCHD_ADDRESS": process_daemon.address}
    outputs = []
    for line in commands.splitlines():
        program, *args = shlex.split(line)
        assert program == ".venv/bin/benchctl"
        benchctl = Path(sys.executable).with_name("benchctl")
        done = subprocess.run(
            [str(benchctl), *args], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done.stdout)
    assert "esp300.axis1" in outputs[0]
    assert outputs[1].strip() == "esp300.axis1 at 12.5 mm"
    assert outputs[2].startswith("EMERGENCY STOP latched: every device stopped")
    assert ".nxs" in outputs[4] and "50" in outputs[4]  # the run's file, 50 frames written

    (python,) = re.findall(r"```python\n(.*?)```", SECTION, re.S)
    assert '"127.0.0.1:50051"' in python
    script = tmp_path / "readme_client.py"
    script.write_text(python.replace("127.0.0.1:50051", process_daemon.address))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    position, wavelength = map(float, lines[0].split())
    assert abs(position - 12.5) < 1e-3 and 690.0 <= wavelength <= 1040.0
    assert lines[1].startswith("Reading(device='power_meter', value=")
