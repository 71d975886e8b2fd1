"""How long `edge-sim demo` (agent and simulator) takes to show the meter's power and the room temperature.

Prints the figure and, as a ratio, against a reference measured in the same run: the time for the same
interpreter to start and print `edge-agent --help` (imports and start-up only, no simulator, no polling).
Issue 2's goal: readings on screen within 5 s. Run: .venv/bin/python -m bench.demo_startup
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tests.support import free_base_port
from tests.test_demo import POWER, TEMPERATURE, first_time_shown, run_demo_in_terminal

RUNS = 3


def reference_s() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "edge_agent", "--help"], check=True, capture_output=True)
    return time.monotonic() - start


def demo_s() -> float:
    code, frames = run_demo_in_terminal("--base-port", str(free_base_port()), seconds=4)
    if code != 0:
        raise SystemExit(f"demo exited {code}")
    shown = [first_time_shown(frames, *point) for point in (POWER, TEMPERATURE)]
    if None in shown:
        raise SystemExit("demo never showed power and temperature")
    return max(t for t in shown if t is not None)


def main() -> None:
    references = [reference_s() for _ in range(RUNS)]
    demos = [demo_s() for _ in range(RUNS)]
    ref, demo = statistics.median(references), statistics.median(demos)
    print(f"edge-agent --help (reference)        median {ref:.2f} s over {RUNS} runs")
    print(f"demo: power and temperature shown    median {demo:.2f} s over {RUNS} runs (goal < 5 s)")
    print(f"ratio demo / reference               {demo / ref:.2f}")


if __name__ == "__main__":
    main()
