"""mutmut over the Python modules listed in pyproject.toml ([tool.mutmut]), bounded in time.

Runs ``mutmut run`` (in its copy under mutants/) for at most ``--time-limit`` seconds, then prints
the score of the mutants that were judged and every survivor (``mutmut show NAME`` prints its diff).
Mutants not reached within the limit are counted as not run, never as killed.

    python -m mutation.python [--time-limit S] [--max-children N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MUTMUT = [sys.executable, "-m", "mutmut"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=1800)
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    log = Path("mutants") / "run.log"
    log.parent.mkdir(exist_ok=True)
    try:
        with log.open("w") as out:
            run = subprocess.run(
                [*MUTMUT, "run", "--max-children", str(args.max_children)],
                stdout=out, stderr=subprocess.STDOUT, timeout=args.time_limit, check=False,
            )  # fmt: skip
        if run.returncode != 0:
            # e.g. "failed to collect stats": the unmutated tests fail in mutmut's copy
            print(log.read_text()[-3000:])
            print(f"mutmut run failed (exit {run.returncode}); no score")
            return 1
    except subprocess.TimeoutExpired:
        print(f"mutmut stopped after {args.time_limit:.0f} s; mutants not reached count as not run")
    subprocess.run([*MUTMUT, "export-cicd-stats"], stdout=subprocess.DEVNULL, check=False)
    stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
    results = subprocess.run([*MUTMUT, "results"], capture_output=True, text=True, check=False).stdout
    survivors = [line.strip() for line in results.splitlines() if line.strip().endswith(": survived")]
    judged = stats["killed"] + stats["survived"] + stats.get("timeout", 0)
    print("survivors:" if survivors else "survivors: none")
    for line in survivors:
        print(f"  {line}")
    score = 100 * (stats["killed"] + stats.get("timeout", 0)) / judged if judged else 0.0
    print(
        f"python mutation score: {stats['killed'] + stats.get('timeout', 0)}/{judged} killed ({score:.0f}%); "
        f"{stats['total'] - judged} of {stats['total']} not judged (not run, no tests, skipped or suspicious)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
