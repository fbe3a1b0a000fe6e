"""Training: optimizers, schedules, the loop, checkpoints, the divergence guard, and train()."""
