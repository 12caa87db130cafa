#!/usr/bin/env bash
# Build ExecuTorch's executor_runner for an arm64-v8a Android phone (the adb runner's device binary) and push it.
#
#   ANDROID_NDK=/path/to/ndk tools/build_executor_runner_android.sh [adb serial]
#
# It clones ExecuTorch at the version of the pip runtime edgekd exports with (a .pte and its runtime must match),
# cross-compiles executor_runner with the XNNPACK backend and the portable, optimized and quantized kernels, and
# pushes it to /data/local/tmp/edgekd/executor_runner (the snapdragon865 profile's runner.binary). Then:
#   edgekd bench --profile snapdragon865 --artifacts out/<name> --runner adb [--serial SERIAL]
# What it reports: executor_runner prints "Model executed successfully N time(s) in T ms.", i.e. the mean latency
# only; the adb runner records the mean and reports p50/p90 and peak memory as not measured (never guessed), so
# those budgets stay unverified until a binary that prints edgekd's JSON line (measure.py's schema) is used.
# Not run on edgekd's CI machines (no NDK, no phone): the flags are ExecuTorch's documented CMake options.
set -euo pipefail
: "${ANDROID_NDK:?set ANDROID_NDK to the Android NDK folder}"
SERIAL="${1:-}"
VERSION="$(python3 -c 'import importlib.metadata as m; print(m.version("executorch"))' 2>/dev/null || echo 1.5.1)"
REF="${EXECUTORCH_REF:-v$VERSION}"  # the release tag of the pip runtime; override when the tag is named otherwise
WORK="${WORK:-$PWD/.executorch-android}"
if [ ! -d "$WORK/executorch" ]; then
  git clone --depth 1 --branch "$REF" --recurse-submodules --shallow-submodules \
    https://github.com/pytorch/executorch.git "$WORK/executorch"
fi
cd "$WORK/executorch"
cmake -S . -B cmake-android-out \
  -DCMAKE_TOOLCHAIN_FILE="$ANDROID_NDK/build/cmake/android.toolchain.cmake" \
  -DANDROID_ABI=arm64-v8a -DANDROID_PLATFORM=android-26 -DCMAKE_BUILD_TYPE=Release \
  -DEXECUTORCH_BUILD_XNNPACK=ON -DEXECUTORCH_BUILD_KERNELS_OPTIMIZED=ON -DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON \
  -DEXECUTORCH_BUILD_EXTENSION_DATA_LOADER=ON -DEXECUTORCH_BUILD_EXTENSION_MODULE=ON \
  -DEXECUTORCH_BUILD_EXTENSION_TENSOR=ON -DEXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR=ON \
  -DEXECUTORCH_BUILD_EXTENSION_RUNNER_UTIL=ON -DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -DEXECUTORCH_ENABLE_LOGGING=ON
cmake --build cmake-android-out -j"$(nproc)" --target executor_runner
ADB=(adb); [ -n "$SERIAL" ] && ADB=(adb -s "$SERIAL")
"${ADB[@]}" shell mkdir -p /data/local/tmp/edgekd
"${ADB[@]}" push cmake-android-out/executor_runner /data/local/tmp/edgekd/executor_runner
"${ADB[@]}" shell chmod 755 /data/local/tmp/edgekd/executor_runner
echo "pushed executor_runner (ExecuTorch $VERSION, arm64-v8a) to /data/local/tmp/edgekd/executor_runner"
