"""Every example in README.md runs, in order, in a fresh directory, as a user would
copy it: ```bash blocks with bash (``softequiv`` and ``python`` from this environment),
```python blocks with this Python. Blocks that only call ``make`` (set-up, the test
suite itself) are checked to name real Makefile targets with ``make -n``.

The default suite runs the examples with less work (FAST: 2 epochs of a small network,
120/60/60 rows of the synthetic data in Python, 3 simulated trajectories, an 8x8 smoke
box with 8 frames for ``data smoke`` and ``discover --dataset smoke``, 5 optimizer steps,
2-fold cross-validation; the Python blocks share one interpreter and the bash blocks one
shell), so only that the commands work is
checked; the slow suite runs them verbatim and also checks results the README states
(``make test-slow``).
"""

from __future__ import annotations

import json
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
    (r"cv=3", "cv=2"),
    (r"(softequiv data smoke [^\n#]*?)--out", r"\1--grid 8 --steps 8 --out"),
    (r"(softequiv discover --dataset smoke [^\n#]*?)--out", r"\1--grid 8 --steps 8 --out"),
]


def examples() -> list[tuple[str, str]]:
    """The README's ```bash and ```python blocks, in order."""
    return [(m[1], m[2]) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def is_make_block(code: str) -> bool:
    lines = [ln.split("#")[0].strip() for ln in code.splitlines()]
    return all(not ln or ln.startswith("make ") for ln in lines)


RUNNER = """\
import sys
for index, path in enumerate(sys.argv[1:]):
    for stream in (sys.stdout, sys.stderr):
        print(f"=== README example {path}", file=stream, flush=True)
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), {"__name__": "__main__"})
"""


def run_examples(tmp_path: Path, substitutions: list[tuple[str, str]], *,
                 one_process: bool) -> dict[str, str]:
    """Run the README's examples in ``tmp_path``; return each one's stdout by file name.

    ``one_process``: all Python blocks in one interpreter (each with fresh globals) and
    all bash blocks in one shell, in README order, to save the start-up of PyTorch;
    otherwise each block in its own process."""
    pytest.importorskip("sklearn")
    pytest.importorskip("mujoco")
    pytest.importorskip("phi")
    env = dict(os.environ, OMP_NUM_THREADS="1", SOFTEQUIV_CACHE=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               MPLBACKEND="Agg")
    scripts: dict[str, list[Path]] = {"bash": [], "python": []}
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
        scripts[language].append(script)
    runs = []
    for script in scripts["bash"] + scripts["python"]:
        command = (["bash", "-euo", "pipefail", str(script)] if script.suffix == ".sh"
                   else [sys.executable, "-c", RUNNER, str(script)])
        runs.append((script.name, command))
    if one_process:
        bash = "".join(f"echo '=== README example {p.name}'; echo '=== README example "
                       f"{p.name}' >&2; bash -euo pipefail {p.name}\n" for p in scripts["bash"])
        runs = [("bash", ["bash", "-euo", "pipefail", "-c", bash]),
                ("python", [sys.executable, "-c", RUNNER, *map(str, scripts["python"])])]
    outputs = {}
    for name, command in runs:
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=3000)
        failed = proc.stderr.rsplit("=== README example ", 1)[-1]
        assert proc.returncode == 0, f"README example {failed[-3000:]}"
        parts = proc.stdout.split("=== README example ")
        outputs.update({p.split("\n", 1)[0].rsplit("/", 1)[-1]: p.split("\n", 1)[1]
                        for p in parts[1:]} if len(parts) > 1 else {name: proc.stdout})
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
    outputs = run_examples(tmp_path, FAST, one_process=True)
    assert len(outputs) == sum(not (lang == "bash" and is_make_block(code))
                               for lang, code in examples())
    assert any(out.startswith("softequiv ") for out in outputs.values())  # --version
    assert (tmp_path / "runs/inertia-csv/levels.png").is_file()
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "ant.npz").is_file()
    assert (tmp_path / "fields-predicted.npz").is_file()
    assert json.loads((tmp_path / "runs/smoke/report.json").read_text())["test_sets"]


@pytest.mark.slow
def test_readme_examples_verbatim(tmp_path):
    outputs = run_examples(tmp_path, [], one_process=False)
    first_python, first_bash = (min((n for n in outputs if n.endswith(ext)),
                                    key=lambda n: int(n[7:].split(".")[0]))
                                for ext in (".py", ".sh"))
    quickstart = outputs[first_python].splitlines()
    assert quickstart[0].startswith("['O2xy'") and quickstart[1] == "['O2xy']"
    assert '{"dim": 10, "size": 180' in outputs[first_bash]
