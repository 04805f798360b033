"""The benches' PNG without matplotlib (the optional ``bench`` extra), in every venv.

Whether matplotlib is installed decides which path the other bench tests take; here a fresh
interpreter blocks its import (``sys.modules["matplotlib"] = None`` makes ``import matplotlib``
raise ImportError), so the no-matplotlib path of both plots runs here and in CI alike: each
returns False and writes nothing, with no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from finalizer.bench.e2e import SCENARIOS

CODE = """
import json, sys
sys.modules["matplotlib"] = None  # import matplotlib -> ImportError, installed or not
from finalizer.bench.e2e_plot import plot as e2e_plot
from finalizer.bench.triggerer_plot import plot as triggerer_plot
e2e_png, triggerer_png, result = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
written = [e2e_plot(result, e2e_png, "bench e2e"), triggerer_plot([], triggerer_png, "bench triggerer")]
print(json.dumps({"written": written, "blocked": sys.modules["matplotlib"] is None}))
"""


def test_both_plots_write_nothing_and_say_so_without_matplotlib(tmp_path: Path) -> None:
    e2e_png, triggerer_png = tmp_path / "e2e.png", tmp_path / "triggerer.png"
    row = {"task_id": "pod_000", "pod_after_base_end": 0.2, "pod_deleted": True}
    result = {"results": [{"scenario": SCENARIOS[0], "variant": "finalizing", "rows": [row]}]}
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(e2e_png), str(triggerer_png), json.dumps(result)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout) == {"written": [False, False], "blocked": True}
    assert not e2e_png.exists()
    assert not triggerer_png.exists()
