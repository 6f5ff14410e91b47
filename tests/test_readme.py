"""Every example in README.md runs, in order, in a fresh directory, as a user would
copy it: ```bash blocks with bash (``softequiv`` and ``python`` from this environment),
```python blocks with this Python. Blocks that only call ``make`` (set-up, the test
suite itself) are checked to name real Makefile targets with ``make -n``.

The default suite runs the examples with less work (FAST: 2 epochs of a small network,
120/60/60 rows of the synthetic data in Python, 3 simulated trajectories, 5 optimizer
steps), so only that the commands work is checked; the slow suite runs them verbatim
and also checks results the README states (``make test-slow``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)

FAST = [
    (r"--epochs \d+", "--epochs 2 --ch 16 --layers 1"),
    (r"\bepochs=\d+", "epochs=2, ch=16, layers=1"),
    (r"inertia\(axis=\"z\", eps=-1.0\)", 'inertia(axis="z", eps=-1.0, n=(120, 60, 60))'),
    (r"--trajectories \d+", "--trajectories 3"),
    (r"--seconds [\d.]+", "--seconds 1.2"),
    (r"range\(500\)", "range(5)"),
]


def examples() -> list[tuple[str, str]]:
    """The README's ```bash and ```python blocks, in order."""
    return [(m[1], m[2]) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def is_make_block(code: str) -> bool:
    lines = [ln.split("#")[0].strip() for ln in code.splitlines()]
    return all(not ln or ln.startswith("make ") for ln in lines)


def run_examples(tmp_path: Path, substitutions: list[tuple[str, str]]) -> list[str]:
    pytest.importorskip("sklearn")
    pytest.importorskip("mujoco")
    env = dict(os.environ, OMP_NUM_THREADS="1", SOFTEQUIV_CACHE=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               MPLBACKEND="Agg")
    outputs = []
    for i, (language, code) in enumerate(examples()):
        if language == "bash" and is_make_block(code):
            for line in filter(None, (ln.split("#")[0].strip() for ln in code.splitlines())):
                check = subprocess.run(["make", "-n", *line.split()[1:]], cwd=ROOT,
                                       capture_output=True, text=True, timeout=60)
                assert check.returncode == 0, (line, check.stderr)
            continue
        for pattern, replacement in substitutions:
            code = re.sub(pattern, replacement, code)
        script = tmp_path / f"example{i}.{'sh' if language == 'bash' else 'py'}"
        script.write_text(code)
        command = (["bash", "-euo", "pipefail", str(script)] if language == "bash"
                   else [sys.executable, str(script)])
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=3000)
        assert proc.returncode == 0, f"README example {i} failed:\n{code}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    return outputs


def test_readme_has_examples_and_no_outside_links():
    text = (ROOT / "README.md").read_text()
    blocks = examples()
    assert sum(lang == "python" for lang, _ in blocks) >= 3
    assert sum(lang == "bash" and not is_make_block(code) for lang, code in blocks) >= 4
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all(not link.startswith(("http", "..", "/")) for link in links), links
    for link in links:
        assert link.startswith("#") or (ROOT / link).exists(), link
    assert "../shared" not in text and "../shared" not in (ROOT / "docs/method.md").read_text()


def test_readme_examples_fast(tmp_path):
    outputs = run_examples(tmp_path, FAST)
    assert any(out.startswith("softequiv ") for out in outputs)  # --version
    assert (tmp_path / "runs/inertia-csv/levels.png").is_file()
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "ant.npz").is_file()


@pytest.mark.slow
def test_readme_examples_verbatim(tmp_path):
    outputs = run_examples(tmp_path, [])
    quickstart = outputs[0].splitlines()
    assert quickstart[0].startswith("['O2xy'") and quickstart[1] == "['O2xy']"
    assert '{"dim": 10, "size": 180' in outputs[1]
