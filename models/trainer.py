"""One training iteration of the GAN, and the training state around it.

``SPADETrainer`` owns the networks, the losses and the two Adam optimisers
(TTUR by default). ``generator_step`` and ``discriminator_step`` each run one
update at a progressive ``Stage`` (None = the full resolution);
``enter_stage`` grows the discriminator when a new resolution level starts
and ``finish_progressive`` removes the generator's auxiliary heads when
pre-training ends. ``network_states``/``optimizer_states`` and the matching
loaders (``resume``) cover everything a resumed run needs to continue
exactly. With the edge-guided generator (``--netG spade_edge``) both steps
also cover its image-branch output, and the generator step its edge map
(``edge_guided_*``). With ECGAN's generator (``--netG ecgan``) both steps judge
its final image, its branch image and its edge, the edge against the photo's
Sobel edge image, weighted as COESAK's code weights them (``ECGAN_WEIGHTS``;
``ecgan_*``).
The discriminator step judges the image of the generator step of the same
iteration, detached (``--d_fake reuse``), or an image generated again by the
updated generator (``--d_fake regenerate``, as SPADE and APF-GAN do: a second
generator forward per iteration, see ``fake_for_discriminator``).
With ``--ema_decay`` the trainer also keeps exponential moving averages of G
(E, Es) as networks of their own in ``nets`` (G_ema, E_ema, Es_ema; see
``models.ema``): updated after every applied generator step
(``update_ema``), saved and loaded with the others, never trained or run.
"""

import math

import jittor as jt
import numpy as np
from jittor import nn

from models.edges import edge_target
from models import loss as losses
from models.diff_augment import diff_augment, parse_policy
from models.ema import ExponentialMovingAverage
from models.encoder import kld_loss, reparameterize
from models.generator import upsample_fade
from models.inception import InceptionLoss
from models.mixed_precision import MixedPrecision
from models.networks import build_networks, is_seg_noise, load_state, semantic_input
from models.normalization import downsample_image, resize_label
from models.progressive import schedule_from_options
from util.core import distributed
from util.core.checkpoint import EMA_SOURCES, ema_name
from util.core.errors import CheckpointError, TrainingDivergedError


# --netG ecgan: the weights of its (final image, branch image, edge) in every loss term, as COESAK's
# pix2pix_model.py (and ECGAN's own code) weights them
ECGAN_WEIGHTS = (2.0, 1.0, 1.0)


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


def drop_from_optimizer(optimizer, params):
    """Remove ``params`` (and their moments) from a Jittor optimiser."""
    dropped = {id(p) for p in params}
    for group in optimizer.param_groups:
        keep = [i for i, p in enumerate(group["params"]) if id(p) not in dropped]
        for key in ("params", "grads", "m", "values"):
            if key in group:
                group[key] = [group[key][i] for i in keep]


class SPADETrainer:
    def __init__(self, opt, start_epoch=1, precision=None):
        """Networks for a run starting at ``start_epoch``: the generator has the
        progressive heads only while pre-training is not finished. ``precision``: a
        MixedPrecision (default: the one --amp asks for on this device)."""
        self.opt = opt
        self.precision = precision if precision is not None else \
            MixedPrecision.for_device(getattr(opt, "amp", "off"), bool(jt.flags.use_cuda))[0]
        self.schedule = schedule_from_options(opt)
        progressive = not self.schedule.finished(start_epoch)
        self.nets = build_networks(opt, with_discriminator=True,
                                   progressive_levels=self.schedule.levels if progressive else 1)
        # Highest level whose sub-discriminator has been initialised (the lowest one starts ready).
        self.d_level = 0 if progressive else self.schedule.last_level
        self.growths = []
        self.vgg_loss = None if opt.no_vgg_loss else losses.VGGLoss(opt.vgg_weights, opt.vgg_input)
        self.inception_loss = None
        if opt.inception_loss:
            self.inception_loss = InceptionLoss(
                opt.inception_weights, resize=getattr(opt, "inception_input", "299") == "299",
                layer_weights=getattr(opt, "inception_layer_weights", (1.0,) * 4),
                norm=getattr(opt, "inception_norm", "running"))
        self.augment_policy = parse_policy(opt.diff_aug)
        self.edge_guided = getattr(opt, "netG", "spade") == "spade_edge"
        self.ecgan = self.needs_edges(opt)
        self.reuse_fake = opt.d_fake == "reuse"
        self._generated = None  # the generator step's output, for the discriminator step of the same iteration
        g_params = []
        for name in ("G", "E", "Es"):
            if name in self.nets:
                g_params += self.nets[name].parameters()
        g_lr, d_lr = learning_rates(opt, 1)
        self.optimizer_G = nn.Adam(g_params, lr=g_lr, betas=adam_betas(opt))
        self.optimizer_D = nn.Adam(self.nets["D"].parameters(), lr=d_lr, betas=adam_betas(opt))
        self.optimizers = {"G": self.optimizer_G, "D": self.optimizer_D}
        # --ema_decay: EMA copies of G (E, Es) in self.nets as G_ema (E_ema, Es_ema), equal to them now
        self.ema, self.ema_sources, self.ema_from_live = None, {}, []
        if getattr(opt, "ema_decay", 0) > 0:
            live = {name: self.nets[name] for name in EMA_SOURCES if name in self.nets}
            self.ema = ExponentialMovingAverage(live, opt.ema_decay)
            self.ema_sources = {ema_name(name): name for name in live}
            self.nets.update({ema_name(name): net for name, net in self.ema.copies.items()})

    @staticmethod
    def needs_edges(opt):
        """Whether the training data must carry the photos' Sobel edge images (``--netG ecgan``)."""
        return getattr(opt, "netG", "spade") == "ecgan"

    # -- progressive growing ---------------------------------------------
    @property
    def progressive(self):
        return self.nets["G"].progressive_levels > 1

    def enter_stage(self, stage):
        """Initialise, once, the sub-discriminator of each level the run reaches for the first time
        from the one of the level below. Returns the levels grown now."""
        grown = []
        while stage is not None and self.d_level < stage.level:
            self.d_level += 1
            self.nets["D"].grow(self.d_level)
            grown.append(self.d_level)
        self.growths += grown
        return grown

    def finish_progressive(self):
        """Remove the generator's to-RGB heads (and their optimiser state) when pre-training ends."""
        g = self.nets["G"]
        heads = [getattr(g, f"to_rgb_{level}") for level in range(g.progressive_levels - 1)]
        drop_from_optimizer(self.optimizer_G, [p for head in heads for p in head.parameters()])
        g.remove_progressive_heads()
        if self.ema is not None:
            self.ema.copies["G"].remove_progressive_heads()
        self.d_level = self.schedule.last_level

    def stage_inputs(self, label, real, stage):
        """(full-size one-hot labels, labels and photos at the stage's resolution).

        --pg_resize box: the photo is box-filtered to the stage's size and, during a fade, blended like the
        generator's output (the new resolution over the 2x-upsampled half resolution); the labels are
        resized with nearest neighbour. bilinear (APF-GAN): photo and one-hot labels are resized with
        bilinear interpolation (labels blend at class boundaries), the photo is not blended."""
        seg = self.precision.cast(semantic_input(label, self.opt))
        real = self.precision.cast(real)
        if stage is None:
            return seg, seg, real
        factor = 2 ** (self.schedule.last_level - stage.level)
        if getattr(self.opt, "pg_resize", "box") == "bilinear":
            if factor == 1:
                return seg, seg, real
            size = (real.shape[2] // factor, real.shape[3] // factor)
            return seg, nn.interpolate(seg, size=size, mode="bilinear"), nn.interpolate(real, size=size,
                                                                                         mode="bilinear")
        real_small = downsample_image(real, factor)
        seg_small = resize_label(seg, real_small.shape[2:])
        if stage.alpha < 1:
            lower = upsample_fade(downsample_image(real_small, 2), getattr(self.opt, "pg_fade_upsample", "nearest"))
            real_small = stage.alpha * real_small + (1 - stage.alpha) * lower
        return seg, seg_small, real_small

    def scale_weights(self, stage):
        return self.nets["D"].scale_weights(stage)

    # -- forward pieces -------------------------------------------------
    def generate(self, seg, real=None, stage=None, all_outputs=False):
        """Fake images for full-size one-hot ``seg``; with a style encoder also returns the KLD term.
        ``all_outputs``: every output of the edge-guided generator (an EdgeGuidedOutputs) instead."""
        mask_features = self.nets["E"](seg) if "E" in self.nets else None
        z, kld = None, None
        if "Es" in self.nets and real is not None:
            mu, logvar = self.nets["Es"](self.precision.cast(real))
            z = reparameterize(mu, logvar)
            kld = kld_loss(mu, logvar) * self.opt.lambda_kld
        g = self.nets["G"].outputs if all_outputs else self.nets["G"]
        return g(seg, z=z, mask_features=mask_features, stage=stage), kld

    def discriminate(self, seg, fake, real, stage=None):
        """Run D once on fake and real stacked along the batch; returns (pred_fake, pred_real)."""
        if self.augment_policy:
            independent = getattr(self.opt, "diff_aug_colour", "shared") == "independent"
            fake, real, seg = diff_augment(fake, real, seg, self.augment_policy, independent_colour=independent)
        preds = self.nets["D"](jt.concat([seg, seg], dim=0), jt.concat([fake, real], dim=0), stage)
        n = fake.shape[0]
        pred_fake = [[f[:n] for f in scale] for scale in preds]
        pred_real = [[f[n:] for f in scale] for scale in preds]
        return pred_fake, pred_real

    # -- updates --------------------------------------------------------
    def generator_step(self, label, real, stage=None, edge=None):
        """One generator update for labels [N, H, W] and photos [N, 3, H, W] (``edge``: their Sobel edge
        images, with --netG ecgan); returns (its loss terms, the generated image)."""
        multiple = self.edge_guided or self.ecgan
        with self.precision.autocast():
            seg, seg_small, real_small = self.stage_inputs(label, real, stage)
            generated, kld = self.generate(seg, real, stage, all_outputs=multiple)
            fake = generated.image if multiple else generated
            if self.ecgan:
                terms = self.ecgan_terms(generated, seg_small, real_small, self.real_edge(edge))
            else:
                terms = self.image_terms(fake, seg_small, real_small, stage)
            if self.edge_guided:
                terms.update(self.edge_guided_terms(generated, seg_small, real_small, stage))
            if kld is not None:
                terms["KLD"] = kld
            total = sum(terms.values())
        self._generated = generated if self.reuse_fake else None
        if self.precision.step(self.optimizer_G, total, self.nets):
            self.update_ema()
        return self._check_finite(terms, "generator"), fake

    def fake_for_discriminator(self, seg, real, stage, all_outputs=False):
        """What the discriminator step judges (detach it): with --d_fake reuse the output of this iteration's
        generator step (made before the generator's update, with that step's seg-noise and style-code draws);
        otherwise, or when no generator step came first, the updated generator's output for the same input under
        no_grad: a second forward, with fresh seg-noise and style-code draws, that updates the generator's
        batch-norm running statistics a second time."""
        generated, self._generated = self._generated, None
        if generated is None:
            with jt.no_grad():
                generated, _ = self.generate(seg, real, stage, all_outputs=all_outputs)
        return generated

    def update_ema(self):
        """Move the EMA networks (--ema_decay) towards the live ones after a generator update."""
        if self.ema is not None:
            self.ema.update()

    def image_terms(self, fake, seg_small, real_small, stage):
        """The generator's loss terms for one generated image: adversarial, feature matching and the
        reconstruction losses the options switch on."""
        opt = self.opt
        pred_fake, pred_real = self.discriminate(seg_small, fake, real_small, stage)
        weights = self.scale_weights(stage)
        terms = {"G_GAN": losses.gan_loss(pred_fake, True, for_discriminator=False, mode=opt.gan_mode,
                                          weights=weights)}
        if not opt.no_ganFeat_loss:
            terms["G_GAN_Feat"] = losses.feature_matching_loss(pred_fake, pred_real, weights) * opt.lambda_feat
        if self.vgg_loss is not None:
            terms["G_VGG"] = self.vgg_loss(fake, real_small) * opt.lambda_vgg
        if self.inception_loss is not None:
            terms["G_Inception"] = self.inception_loss(fake, real_small) * opt.lambda_inception
        if opt.lambda_l1 > 0:
            terms["G_L1"] = (fake - real_small).abs().mean() * opt.lambda_l1
        if opt.lambda_style > 0:
            terms["G_style"] = losses.colour_style_loss(fake, real_small) * opt.lambda_style
        return terms

    def edge_guided_terms(self, outputs, seg_small, real_small, stage):
        """The edge-guided generator's further terms: the image-branch output's ``image_terms`` times
        --lambda_branch (names ending in _branch) and the L1 distance of the edge map to the Canny
        edges of the real photo times --lambda_edge (G_Edge)."""
        opt = self.opt
        terms = {}
        if opt.lambda_branch > 0:
            branch = self.image_terms(outputs.branch_image, seg_small, real_small, stage)
            terms = {f"{name}_branch": value * opt.lambda_branch for name, value in branch.items()}
        terms["G_Edge"] = (outputs.edge - edge_target(real_small)).abs().mean() * opt.lambda_edge
        return terms

    def real_edge(self, edge):
        if edge is None:
            raise ValueError("--netG ecgan trains on the photos' Sobel edge images: give the batch's 'edge' "
                             "(PairedDataset(..., edges=True))")
        return self.precision.cast(edge)

    def ecgan_terms(self, outputs, seg, real, real_edge):
        """ECGAN's generator terms as COESAK's code computes them (``pix2pix_model.compute_generator_loss``): the
        ``image_terms`` of the final image, the branch image (both against the photo) and the edge (against the
        photo's Sobel edge image), summed per term with ``ECGAN_WEIGHTS``."""
        parts = ((outputs.image, real), (outputs.branch_image, real), (outputs.edge, real_edge))
        terms = {}
        for (fake, target), weight in zip(parts, ECGAN_WEIGHTS):
            for name, value in self.image_terms(fake, seg, target, None).items():
                terms[name] = terms[name] + value * weight if name in terms else value * weight
        return terms

    def ecgan_discriminator_terms(self, label, real, edge):
        """D's terms against ECGAN's three outputs, each with its own real counterpart (the photo for both
        images, the Sobel edge image for the edge), one pass of D each, summed with ``ECGAN_WEIGHTS``
        (``pix2pix_model.compute_discriminator_loss``)."""
        opt = self.opt
        seg, _, real = self.stage_inputs(label, real, None)
        outputs = self.fake_for_discriminator(seg, real, None, all_outputs=True)
        parts = ((outputs.image, real), (outputs.branch_image, real), (outputs.edge, self.real_edge(edge)))
        terms = {"D_Fake": 0, "D_Real": 0}
        for (fake, target), weight in zip(parts, ECGAN_WEIGHTS):
            pred_fake, pred_real = self.discriminate(seg, fake.detach(), target, None)
            terms["D_Fake"] += losses.gan_loss(pred_fake, False, for_discriminator=True, mode=opt.gan_mode) * weight
            terms["D_Real"] += losses.gan_loss(pred_real, True, for_discriminator=True, mode=opt.gan_mode) * weight
        return terms

    def discriminator_step(self, label, real, stage=None, edge=None):
        """One discriminator update (``edge``: the photos' Sobel edge images, with --netG ecgan); returns its
        loss terms."""
        with self.precision.autocast():
            if self.ecgan:
                terms = self.ecgan_discriminator_terms(label, real, edge)
            elif self.edge_guided:
                terms = self.edge_guided_discriminator_terms(label, real, stage)
            else:
                terms = self.discriminator_terms(label, real, stage)
        self.precision.step(self.optimizer_D, terms["D_Fake"] + terms["D_Real"], self.nets)
        return self._check_finite(terms, "discriminator")

    def discriminator_terms(self, label, real, stage=None):
        opt = self.opt
        seg, seg_small, real_small = self.stage_inputs(label, real, stage)
        fake = self.fake_for_discriminator(seg, real, stage).detach()
        pred_fake, pred_real = self.discriminate(seg_small, fake, real_small, stage)
        weights = self.scale_weights(stage)
        terms = {"D_Fake": losses.gan_loss(pred_fake, False, for_discriminator=True, mode=opt.gan_mode,
                                           weights=weights),
                 "D_Real": losses.gan_loss(pred_real, True, for_discriminator=True, mode=opt.gan_mode,
                                           weights=weights)}
        return terms

    def edge_guided_discriminator_terms(self, label, real, stage=None):
        """D's loss terms against both images of the edge-guided generator: each term is the mean over the
        final and the image-branch image, weighted 1 : --lambda_branch (one pass of D per image)."""
        opt = self.opt
        seg, seg_small, real_small = self.stage_inputs(label, real, stage)
        outputs = self.fake_for_discriminator(seg, real, stage, all_outputs=True)
        fakes = [(outputs.image, 1.0)]
        if opt.lambda_branch > 0:
            fakes.append((outputs.branch_image, opt.lambda_branch))
        weights = self.scale_weights(stage)
        d_fake, d_real = [], []
        for fake, _ in fakes:
            pred_fake, pred_real = self.discriminate(seg_small, fake.detach(), real_small, stage)
            d_fake.append(losses.gan_loss(pred_fake, False, for_discriminator=True, mode=opt.gan_mode,
                                          weights=weights))
            d_real.append(losses.gan_loss(pred_real, True, for_discriminator=True, mode=opt.gan_mode,
                                          weights=weights))
        image_weights = [w for _, w in fakes]
        return {"D_Fake": losses.weighted_mean(d_fake, image_weights),
                "D_Real": losses.weighted_mean(d_real, image_weights)}

    @staticmethod
    def _check_finite(terms, which):
        # Averaged over the MPI ranks, so that every rank logs the same values and stops together.
        values = distributed.mean_values(terms)
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
        """Fill the networks from this run's checkpoint (resume), strictly. EMA networks that the checkpoint
        lacks (it was written without --ema_decay) start as copies of the loaded networks: their names are
        returned and kept in ``ema_from_live``."""
        for name, net in self.nets.items():
            if name in self.ema_sources and name not in states:
                continue
            load_state(net, states[name], f"{source} [{name}]")
        return self._start_missing_ema(states)

    def resume(self, state, net_states, source):
        """Continue this run exactly from its checkpoint: the networks, the optimisers, the grown
        discriminator level and the loss scaler of training ``state`` (the RNG state is the caller's)."""
        self.load_networks(net_states, source)
        self.load_optimizer_states(state["optimizers"], source)
        self.d_level = state.get("d_level", self.d_level)
        self.precision.load(state.get("precision"))

    def _start_missing_ema(self, states):
        self.ema_from_live = [name for name in self.ema_sources if name not in states]
        for name in self.ema_from_live:
            self.ema.copy_from_live(self.ema_sources[name])
        return self.ema_from_live

    def init_networks(self, states, source):
        """Fill the networks from another run's checkpoint; parameters that the options add
        (seg noise) may be absent and keep their initial values. Returns {net: [new keys]}.
        EMA networks start from the source's EMA networks, their new parameters from the loaded
        network's values; without them in the source, as copies of the loaded networks (``ema_from_live``)."""
        new = {}
        for name, net in self.nets.items():
            if name in self.ema_sources:
                if name in states:
                    new[name] = load_state(net, states[name], f"{source} [{name}]", may_be_new=is_seg_noise)
                    self.ema.copy_from_live(self.ema_sources[name], new[name])
                continue
            if name not in states:
                new[name] = sorted(net.state_dict())
                continue
            new[name] = load_state(net, states[name], f"{source} [{name}]", may_be_new=is_seg_noise)
        self._start_missing_ema(states)
        return {name: keys for name, keys in new.items() if keys}

    def load_optimizer_states(self, states, source):
        for name, optimizer in self.optimizers.items():
            saved = states[name]
            sizes = [len(g["m"]) for g in optimizer.param_groups]
            if [len(ms) for ms in saved["m"]] != sizes:
                raise CheckpointError(f"{source}: the {name} optimiser state has {[len(ms) for ms in saved['m']]} "
                                      f"parameters, the model built from the options {sizes}; the options differ "
                                      f"from the ones the checkpoint was written with.")
            optimizer.n_step = saved["n_step"]
            optimizer.lr = saved["lr"]
            for group, ms, vs in zip(optimizer.param_groups, saved["m"], saved["v"]):
                group["lr"] = saved["lr"]
                for var, value in zip(group["m"], ms):
                    var.assign(jt.array(np.asarray(value)))
                for var, value in zip(group["values"], vs):
                    var.assign(jt.array(np.asarray(value)))
