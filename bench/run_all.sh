#!/bin/sh
# Reruns every benchmark and experiment and rewrites BENCHMARKS.md; the
# options are those of `python -m bench --help` (e.g. --only=reader,losses).
cd "$(dirname "$0")/.." && exec python -m bench "$@"
