"""Command-line options: base (shared), train and test sets, plus saving and
re-loading the resolved options next to the checkpoints. Pure Python: parsing
options never imports Jittor."""
