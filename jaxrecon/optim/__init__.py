"""Optimizers as optax transformations: SUMO (`sumo`) and the loss-normalized step rules that train homogeneous
nets into the KKT regime (`schedules`)."""
