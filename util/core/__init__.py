"""The foundation every other package imports: typed user errors, the command-line
entry plumbing, device choice and the GPU check before Jittor is imported,
multi-process helpers, seeding, the one checkpoint codec (atomic writes,
checksums) and the verified download of published weight files. Imports no
other project package and never Jittor at import time."""
