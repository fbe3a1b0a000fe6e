"""Training: optimizers, schedules, the loop, the divergence guard, resume, and train()."""
