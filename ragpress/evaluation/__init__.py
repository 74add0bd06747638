"""Evaluation built into the product (`ragpress eval`): eval sets, measures and intervals, and the runner that
drives a pipeline through the service exactly as REST does."""
