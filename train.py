"""Train with the two-phase recipe: progressive-size pre-training, then augmented fine-tuning.

    python train.py --input_path DATA/train [--name NAME] [--recipe apf|improved|demo] [train_phase.py flags ...]

Runs, in this process, the phases of a recipe (options/presets/RECIPE_pretrain.json and
RECIPE_finetune.json), each as one run of train_phase.py in the same experiment folder:

  pretrain   progressive pre-training; the generator ends as a plain full-size model
  finetune   starts from the last pre-training epoch (--init_from) with fresh optimisers
             and continues the epoch count (apf: epochs 181..310)

A one-phase recipe (options/presets/RECIPE_train.json, e.g. coesak) runs its single phase
``train``.

Every train_phase.py flag given here applies to both phases and overrides the
presets; --pretrain_args / --finetune_args give flags to one phase only. After
a stop (Ctrl-C, crash), the same command with --continue_train resumes in the
phase that was running. Before training, the pure-colour dictionary used by
`test.py --use_pure` is built once into the experiment folder.
"""

import argparse
import os
import shlex
import sys

from models import layout
from options import base_options, presets, train_options
from util.core import checkpoint, device, distributed
from util.core.cli import run_main
from util.core.errors import CheckpointError, OptionError

PHASES = ("pretrain", "finetune")
SINGLE_PHASE = ("train",)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=base_options.HelpFormatter, allow_abbrev=False,
                                     epilog="All other flags are train_phase.py flags (python train_phase.py "
                                            "--help), passed to both phases.")
    parser.add_argument("--recipe", default="apf",
                        help="recipe: options/presets/RECIPE_pretrain.json and RECIPE_finetune.json, or "
                             "RECIPE_train.json for a one-phase recipe. apf: APF-GAN as its code ran (real settings); "
                             "improved: the same system with spectral norm, per-iteration fades, shared DiffAugment "
                             "colour, the Inception network's own statistics and an EMA generator (docs/training.md, "
                             "'APF-GAN's code, the apf recipe and the improved recipe'); coesak: the COESAK team's "
                             "ECGAN style-track model as its code ran (one phase; docs/style-track.md); demo: the CPU "
                             "demo")
    parser.add_argument("--phases", default=None,
                        help="comma-separated phases to run, in order, from: pretrain, finetune (default: all the "
                             "recipe's phases; a one-phase recipe has the phase train only)")
    parser.add_argument("--pretrain_args", default="", help="extra train_phase.py flags for pre-training only")
    parser.add_argument("--finetune_args", default="", help="extra train_phase.py flags for fine-tuning only")
    parser.add_argument("--continue_train", **base_options.SWITCH,
                        help="resume the experiment in the phase its 'latest' checkpoint belongs to")
    parser.add_argument("--no_pure_dictionary", **base_options.SWITCH,
                        help="do not build the pure-colour dictionary (only test.py --use_pure needs it)")
    return parser


def recipes():
    """Recipe names: the presets NAME for which NAME_pretrain and NAME_finetune both exist (two phases) or
    NAME_train exists (one phase)."""
    names = set(presets.available())
    two = {n.removesuffix("_pretrain") for n in names
           if n.endswith("_pretrain") and n.removesuffix("_pretrain") + "_finetune" in names}
    return sorted(two | {n.removesuffix("_train") for n in names if n.endswith("_train")})


def recipe_phases(recipe):
    """The phases of ``recipe``: PHASES, or SINGLE_PHASE for a one-phase recipe."""
    return SINGLE_PHASE if f"{recipe}_train" in presets.available() else PHASES


def parse_phases(text, phases=PHASES):
    """The phases of ``phases`` that ``text`` (comma-separated) names, in their order."""
    named = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in named if p not in phases]
    if bad or not named:
        raise OptionError(f"--phases {text!r}: expected a comma-separated list from {', '.join(phases)}.")
    return [p for p in phases if p in named]


def phase_argv(phase, args, common):
    extra = {"pretrain": args.pretrain_args, "finetune": args.finetune_args}.get(phase, "")
    return ["--preset", f"{args.recipe}_{phase}", "--phase_name", phase, *common, *shlex.split(extra)]


def last_epoch(opt):
    return opt.niter + opt.niter_decay


def latest_state(folder):
    """The 'latest' training state of the experiment, or None."""
    path = checkpoint.state_path(folder, "latest")
    return checkpoint.read_file(path, "training-state") if os.path.isfile(path) else None


def plan(phases, args, opts, folder):
    """[(phase, extra flags)] to run: where each phase starts (fresh, --continue_train or --init_from)."""
    state = latest_state(folder) if args.continue_train else None
    if args.continue_train and state is None:
        raise CheckpointError(f"--continue_train: {folder} has no 'latest' checkpoint to resume.")
    steps = []
    for phase in phases:
        if phase in ("pretrain", *SINGLE_PHASE):  # a phase that starts from scratch
            if state is None:
                steps.append((phase, []))
            elif state.get("phase") == phase and state["next_epoch"] <= last_epoch(opts[phase]):
                steps.append((phase, ["--continue_train"]))
            # otherwise that phase is complete
        else:
            if state is not None and state.get("phase") == "finetune":
                steps.append((phase, ["--continue_train"]))
            else:
                steps.append((phase, ["--init_from", str(last_epoch(opts["pretrain"]))]))
    return steps


def check_weight_files(opts):
    """Every weights file the phases need is there (downloaded if missing and published), before any phase."""
    for phase, opt in opts.items():
        train_options.ensure_weight_files(opt, f"the {phase} phase", " No phase was started.")


def build_pure_dictionary(opt, folder):
    from tqdm import tqdm

    from data import pure_colour
    path = pure_colour.default_path(folder)
    if os.path.isfile(path):
        distributed.say(f"pure-colour dictionary: {path} exists")
        return
    with tqdm(desc="pure-colour dictionary", unit="label", dynamic_ncols=True, file=sys.stderr) as bar:
        dictionary = pure_colour.build_dictionary(opt.input_path, opt.label_nc, opt.crop_size,
                                                  layout.image_height(opt), progress=bar)
    pure_colour.save_dictionary(path, dictionary)
    print(f"pure-colour dictionary: {sum(len(v) for v in dictionary.values())} single-class photos of "
          f"{len(dictionary)} classes -> {path}")


def run_phase(phase_args):
    """One phase, as ``python train_phase.py PHASE_ARGS`` runs it; returns its exit code."""
    opt, parser, notes = train_options.parse_phase(phase_args)
    for note in notes:
        distributed.say(note)
    distributed.check_batch_size(opt.batchSize, distributed.world_size())
    use_cuda = device.setup(opt.gpu)

    from models.training import run_training
    folder = checkpoint.experiment_dir(opt)
    return run_training(opt, use_cuda, on_start=lambda: base_options.save_options(opt, parser, folder))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, common = build_parser().parse_known_args(argv)
    if args.recipe not in recipes():
        raise OptionError(f"--recipe {args.recipe}: no presets {args.recipe}_pretrain.json and "
                          f"{args.recipe}_finetune.json, nor {args.recipe}_train.json, in {presets.FOLDER}; recipes: "
                          f"{', '.join(recipes())}.")
    all_phases = recipe_phases(args.recipe)
    phases = parse_phases(args.phases, all_phases) if args.phases is not None else list(all_phases)
    if all_phases == SINGLE_PHASE and (args.pretrain_args or args.finetune_args):
        raise OptionError(f"--recipe {args.recipe} has one phase (train): give its flags directly, not through "
                          f"--pretrain_args / --finetune_args.")
    # Parse every phase's options first: a typo or a missing weights file fails before any training.
    opts = {phase: train_options.parse(phase_argv(phase, args, common))[0] for phase in all_phases}
    folder = checkpoint.experiment_dir(opts[all_phases[0]])
    if any(checkpoint.experiment_dir(opt) != folder for opt in opts.values()):
        raise OptionError("both phases must use the same --name and --checkpoints_dir.")
    steps = plan(phases, args, opts, folder)
    check_weight_files({p: opts[p] for p in phases})
    distributed.check_launch()
    device.setup(opts[phases[0]].gpu)

    import jittor as jt

    if not args.no_pure_dictionary and distributed.is_main():
        build_pure_dictionary(opts[phases[0]], folder)
    for phase, extra in steps:
        phase_args = phase_argv(phase, args, common) + extra
        distributed.say(f"=== {phase}: train_phase.py {' '.join(shlex.quote(a) for a in phase_args)}")
        code = run_phase(phase_args)
        if code != 0:
            return code
        jt.gc()
    distributed.say(f"recipe '{args.recipe}' finished ({', '.join(phases)}); checkpoints in {folder}")
    return 0


if __name__ == "__main__":
    run_main(main)
