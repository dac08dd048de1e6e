"""Everything about the CNN, shared by the workers and training: metadata, artifacts, architectures,
preprocessing, the one `predict`, and loading a version for serving. Imports nothing above the core."""
