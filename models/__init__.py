"""Networks and what is done with them: normalisation layers, the SPADE
generator, the discriminators, the encoders, the losses, DiffAugment, the
progressive schedule, the trainer and the training run, the EMA generator,
weight averaging, generation, the training page, and the import of released
checkpoints. The network modules import Jittor (call
``util.core.device.setup`` first); ``layout``, ``pretrained``, ``ema``,
``progressive`` and the averaging and checkpoint-mapping modules do not."""
