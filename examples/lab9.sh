#!/usr/bin/env bash
# The course's Lab 9 in one command: N(0, 1) against Xavier and He initialisation, dropout and
# batch normalisation, three seeds each, side by side; with gradient statistics for gradients.png.
# Extra arguments go to mnist-compare and override these, e.g.:
#   examples/lab9.sh --score-on ../shared/data/mnist-t10k --out runs/lab9
set -euo pipefail
exec mnist-compare relu+normal-init relu+xavier relu+he relu+xavier+dropout batchnorm+he \
    -p grad-stats --seeds 3 --dataset mnist-sample "$@"
