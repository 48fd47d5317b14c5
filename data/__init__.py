"""Data: class definitions, image/label file I/O and validation, transforms,
datasets, and the procedural demo dataset. Importing this package does not
import Jittor; only ``data.datasets`` does."""
