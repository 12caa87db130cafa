"""One knowledge-distillation trainer for the distill (fp32) and qat (PT2E fake-quant) stages.

- loss.py: KD loss (T^2-scaled KL + label CE), embedding loss for tasks without classes.
- schedules.py: temperature schedule (constant / linear) and LR schedule (constant / cosine / linear + warmup).
- hidden.py: hidden-state matching through forward hooks and learned projections (trained, never exported).
- checkpoint.py: atomic checkpoints with RNG state, for --resume.
- loop.py: `train_kd`, the loop both stages call.
- plot.py: the loss-curve PNG for the report.
"""
