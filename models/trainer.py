"""One training iteration of the GAN, and the training state around it.

``SPADETrainer`` owns the networks, the losses and the two Adam optimisers
(TTUR by default). ``generator_step`` and ``discriminator_step`` each run one
update; ``state_dict``/``load_state_dict`` cover networks and optimisers so
that a resumed run continues exactly.
"""

import math

import jittor as jt
import numpy as np
from jittor import nn

from models import loss as losses
from models.encoder import kld_loss, reparameterize
from models.networks import build_networks, load_state, one_hot
from util.errors import TrainingDivergedError


def learning_rates(opt, epoch):
    """(G lr, D lr) used during ``epoch`` (1-based): constant for ``niter`` epochs, then linear
    decay over ``niter_decay`` epochs; TTUR halves G's and doubles D's rate."""
    lr = opt.lr
    if opt.niter_decay > 0 and epoch > opt.niter + 1:
        lr = opt.lr * max(0.0, 1.0 - (epoch - opt.niter - 1) / opt.niter_decay)
    if opt.no_TTUR:
        return lr, lr
    return lr / 2, lr * 2


def adam_betas(opt):
    return (opt.beta1, opt.beta2)


class SPADETrainer:
    def __init__(self, opt):
        self.opt = opt
        self.nets = build_networks(opt, with_discriminator=True)
        self.vgg_loss = None if opt.no_vgg_loss else losses.VGGLoss(opt.vgg_weights)
        g_params = []
        for name in ("G", "E", "Es"):
            if name in self.nets:
                g_params += self.nets[name].parameters()
        g_lr, d_lr = learning_rates(opt, 1)
        self.optimizer_G = nn.Adam(g_params, lr=g_lr, betas=adam_betas(opt))
        self.optimizer_D = nn.Adam(self.nets["D"].parameters(), lr=d_lr, betas=adam_betas(opt))
        self.optimizers = {"G": self.optimizer_G, "D": self.optimizer_D}

    # -- forward pieces -------------------------------------------------
    def generate(self, seg, real=None):
        """Fake images for one-hot ``seg``; with a style encoder also returns the KLD term."""
        mask_features = self.nets["E"](seg) if "E" in self.nets else None
        z, kld = None, None
        if "Es" in self.nets and real is not None:
            mu, logvar = self.nets["Es"](real)
            z = reparameterize(mu, logvar)
            kld = kld_loss(mu, logvar) * self.opt.lambda_kld
        return self.nets["G"](seg, z=z, mask_features=mask_features), kld

    def discriminate(self, seg, fake, real):
        """Run D once on fake and real stacked along the batch; returns (pred_fake, pred_real)."""
        preds = self.nets["D"](jt.concat([seg, seg], dim=0), jt.concat([fake, real], dim=0))
        n = fake.shape[0]
        pred_fake = [[f[:n] for f in scale] for scale in preds]
        pred_real = [[f[n:] for f in scale] for scale in preds]
        return pred_fake, pred_real

    # -- updates --------------------------------------------------------
    def generator_step(self, label, real):
        opt = self.opt
        seg = one_hot(label, opt.label_nc)
        fake, kld = self.generate(seg, real)
        pred_fake, pred_real = self.discriminate(seg, fake, real)
        terms = {"G_GAN": losses.gan_loss(pred_fake, True, for_discriminator=False, mode=opt.gan_mode)}
        if not opt.no_ganFeat_loss:
            terms["G_GAN_Feat"] = losses.feature_matching_loss(pred_fake, pred_real) * opt.lambda_feat
        if self.vgg_loss is not None:
            terms["G_VGG"] = self.vgg_loss(fake, real) * opt.lambda_vgg
        if opt.lambda_l1 > 0:
            terms["G_L1"] = (fake - real).abs().mean() * opt.lambda_l1
        if kld is not None:
            terms["KLD"] = kld
        total = sum(terms.values())
        self.optimizer_G.step(total)
        return self._check_finite(terms, "generator"), fake

    def discriminator_step(self, label, real):
        opt = self.opt
        seg = one_hot(label, opt.label_nc)
        with jt.no_grad():
            fake, _ = self.generate(seg, real)
        fake = fake.detach()
        pred_fake, pred_real = self.discriminate(seg, fake, real)
        terms = {"D_Fake": losses.gan_loss(pred_fake, False, for_discriminator=True, mode=opt.gan_mode),
                 "D_Real": losses.gan_loss(pred_real, True, for_discriminator=True, mode=opt.gan_mode)}
        self.optimizer_D.step(terms["D_Fake"] + terms["D_Real"])
        return self._check_finite(terms, "discriminator")

    @staticmethod
    def _check_finite(terms, which):
        values = {k: float(v.item()) for k, v in terms.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(
                f"the {which} loss became non-finite ({', '.join(f'{k}={values[k]}' for k in bad)}); training "
                f"stopped and the last good checkpoint was kept. Lower --lr, check the data, or resume from an "
                f"earlier checkpoint with --continue_train --which_epoch N.")
        return values

    def set_epoch_learning_rate(self, epoch):
        g_lr, d_lr = learning_rates(self.opt, epoch)
        for optimizer, lr in ((self.optimizer_G, g_lr), (self.optimizer_D, d_lr)):
            optimizer.lr = lr
            for group in optimizer.param_groups:
                group["lr"] = lr
        return g_lr, d_lr

    # -- state ----------------------------------------------------------
    def network_states(self):
        return {name: net.state_dict() for name, net in self.nets.items()}

    def optimizer_states(self):
        out = {}
        for name, optimizer in self.optimizers.items():
            out[name] = {"n_step": optimizer.n_step, "lr": optimizer.lr,
                         "m": [[m.numpy() for m in g["m"]] for g in optimizer.param_groups],
                         "v": [[v.numpy() for v in g["values"]] for g in optimizer.param_groups]}
        return out

    def load_networks(self, states, source):
        for name, net in self.nets.items():
            load_state(net, states[name], f"{source} [{name}]")

    def load_optimizer_states(self, states):
        for name, optimizer in self.optimizers.items():
            saved = states[name]
            optimizer.n_step = saved["n_step"]
            optimizer.lr = saved["lr"]
            for group, ms, vs in zip(optimizer.param_groups, saved["m"], saved["v"]):
                group["lr"] = saved["lr"]
                for var, value in zip(group["m"], ms):
                    var.assign(jt.array(np.asarray(value)))
                for var, value in zip(group["values"], vs):
                    var.assign(jt.array(np.asarray(value)))
