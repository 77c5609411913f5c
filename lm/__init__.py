"""The model, its sharding, the train step, checkpoints and the host loop."""
