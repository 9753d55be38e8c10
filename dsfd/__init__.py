"""DSFD: the Dual Shot Face Detector in pure PyTorch."""
