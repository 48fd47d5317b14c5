"""The foundation every other package imports: typed user errors, the command-line
entry plumbing, device choice, multi-process helpers, seeding and the one
checkpoint codec (atomic writes, checksums). Imports no other project package
and never Jittor at import time."""
