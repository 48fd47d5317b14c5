"""Measurement: FID (pytorch-fid's method, cached reference statistics),
checkpoint ranking by FID, the demo segmenter and mask accuracy, the
competition score, and FLOP counting. Built on data/ and models/."""
