"""`python -m bench`: reruns every benchmark and rewrites BENCHMARKS.md.

See bench/runner.py for the options (`python -m bench --help`).
"""

import sys

from bench import runner

if __name__ == "__main__":
    sys.exit(runner.main())
