"""progress-sim: fake multi-model analysis jobs that publish through progress_sdk."""
