"""ragpress: retrieval-augmented generation that sends the model less, better context."""

import os

# No telemetry leaves a ragpress process; on machines without internet it would only stall and warn.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
