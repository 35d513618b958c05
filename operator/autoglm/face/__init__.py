"""What a person runs: the CLI, the demo and their human-readable views. Imported by nothing else."""
