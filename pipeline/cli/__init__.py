"""The `brief` command: thin shells over the pipeline's functions, one module per group."""
