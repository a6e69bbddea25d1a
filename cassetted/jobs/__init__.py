"""Song jobs: the runner (queue, admission, outcome), the worker processes, the pipeline."""
