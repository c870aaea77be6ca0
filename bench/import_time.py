"""Cold-start cost of the Lambda entry: median wall time of `import handlers.lambda_entry` in a fresh interpreter."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

RUNS = 15
PROBE = "import time; start = time.perf_counter(); import handlers.lambda_entry; print(time.perf_counter() - start)"


def main() -> None:
    seconds = [
        float(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
        for _ in range(RUNS)
    ]
    result = {"runs": RUNS, "median_ms": statistics.median(seconds) * 1000, "max_ms": max(seconds) * 1000}
    print(f"import handlers.lambda_entry: median {result['median_ms']:.0f} ms, max {result['max_ms']:.0f} ms")
    out = Path(__file__).parent / "results" / "import_time.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
