"""Migration scripts, applied in order; append-only: never edit a released one."""
