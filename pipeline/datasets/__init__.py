"""Dataset readers and generators: manifests and ground truth as numpy (no Ray, no torch)."""
