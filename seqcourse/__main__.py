"""Command line: ``python -m seqcourse COMMAND ...`` (also installed as ``seqcourse``).

Commands:
  generate SOLUTIONS_DIR EXERCISES_DIR   write the student notebooks from the authored solutions
  grade SOLUTION_NOTEBOOK SUBMISSIONS... grade a class's submitted notebooks, each in a sandbox
  autograder gradescope SOLUTION -o ZIP  build Gradescope's autograder archive for one notebook
  experiments list|run|verify            the trained experiments behind the prose (results/*.json)
  bench                                  execute every book notebook (wall time, peak memory), then
                                         benchmark every model against torch's reference (ratios)
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "generate": "seqcourse.grading.generate",
    "grade": "seqcourse.autograde.batch",
    "autograder": "seqcourse.autograde.gradescope",
    "bench": "seqcourse.tools.bench",
    "experiments": "seqcourse.experiments.runner",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
