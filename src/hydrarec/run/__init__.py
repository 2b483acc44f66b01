"""A run: what turns a config into a run directory and back (build the model, train,
write and read the run, add items, its item index)."""
