"""Commands (run as ``python util/NAME.py`` or ``python -m util.NAME``): every
module at this level is a command. The libraries they use live in the
sub-packages: ``util.core`` (the foundation) and ``util.metrics``."""
