"""Networks by role: normalisation layers, the SPADE generator, the multiscale
discriminator, the encoders, the losses, and the trainer that ties them
together. Importing any sub-module imports Jittor: call
``util.core.device.setup`` first."""
