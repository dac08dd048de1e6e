"""Training: labelled stills -> multi-label CNN -> safe artifact registered in the model registry."""
