#!/usr/bin/env bash
# Every optimizer side by side, each at its conventional rate: the core's Adam (the arm "core") and the eleven optimizer
# plugins, on relu + he, 15 epochs, three seeds, trained on the 4,000 sample digits and scored on the official 10,000
# test digits ($MNIST_T10K, by default ../shared/data/mnist-t10k beside this repository). The comparison's folder gets
# comparison.csv, comparison.json and curves.png. Extra arguments go to mnist-compare and override these, e.g.:
#   examples/optimizers.sh --epochs 1 --seeds 1 --out runs/optimizers-smoke
# sgd[momentum=0.9] is SGD with momentum, an arm of its own beside plain SGD.
set -euo pipefail
scored_on="${MNIST_T10K:-$(dirname "$0")/../../shared/data/mnist-t10k}"
exec mnist-compare core sgd "sgd[momentum=0.9]" adadelta adagrad adamax asgd lbfgs rmsprop rprop adamw nadam radam \
    -p relu -p he --epochs 15 --seeds 3 --dataset mnist-sample --score-on "$scored_on" "$@"
