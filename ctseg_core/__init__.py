"""ctseg core: loading, models, inference, training, annotation store. Never imports Qt."""

import os

# OpenMP threads that wait by spinning collapse when the CPU is shared (a GUI, a training run, other
# programs): on a loaded 2-core machine one aa_unet training step took 7.4 s with spinning threads and
# 1.1 s with passive ones (benchmarks/bench_training.py measures both). Set before torch loads OpenMP;
# an explicit setting by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
