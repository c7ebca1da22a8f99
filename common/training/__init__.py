"""The training runtime shared by both models: one train step, EMA, schedules,
optimizers, checkpoints, logging and the distribution hook."""
