#!/usr/bin/env bash
# The course's first comparison: the same 784-256-256-10 network with the core's
# sigmoid and with ReLU, evaluated on the same test split. Extra arguments go to
# both runs, e.g.:  examples/sigmoid-vs-relu.sh --dataset mnist-sample --epochs 5
set -euo pipefail
out=$(mktemp -d)
report='import json, sys; f = json.load(sys.stdin)["final"]
print("%-8s test accuracy %.4f  test loss %.4f" % (sys.argv[1], f["test_accuracy"], f["test_loss"]))'
mnist-run "$@" --out "$out/sigmoid" --json 2>/dev/null | python3 -c "$report" sigmoid
mnist-run --plugin relu "$@" --out "$out/relu" --json 2>/dev/null | python3 -c "$report" relu
echo "records in $out"
