"""Benchmark of model selection: generation and Inception feature extraction, in images per second.

    python -m util.bench_fid [--settings real|small] [--gpu auto|on|off] [--json OUT.json]

Measures, with randomly initialised networks (speed does not depend on the
weights' values) and random label maps / images:

* generation: the generator's forward pass (label map -> image), batch
  --gen_batch, at the settings' size; output copied back to the host;
* JPEG: writing each generated image as JPEG (quality 95) and reading it
  back, as util/fid.py and test.py do between generation and Inception;
* Inception: pytorch-fid's pipeline on uint8 images of the settings' size
  (scaling, bilinear resize to 299, InceptionV3 up to pool_3), batch
  --fid_batch; features copied back to the host;
* the Frechet distance of two 2048-dimensional statistics (scipy sqrtm, as
  pytorch-fid; the way its trace term was computed is printed).

Each measurement runs one warm-up pass (compilation; not counted), then
--repeats timed passes of --images images; the median rate is reported. The
last row adds the parts up into the time to score 1000 generated images
(generation + JPEG + Inception + one distance), the cost of one checkpoint in
util/fid.py or one run in test.py, reference statistics cached.

--settings real: 512x384, ngf 64, apf_more layout, 29 classes (the APF
model); small: 128x96, ngf 16, 'normal' (a CPU-sized model).
"""

import argparse
import io
import json
import platform
import statistics
import sys
import time

import numpy as np

from options.base_options import HelpFormatter, positive_int
from util.core import device
from util.core.cli import run_main

SETTINGS = {
    "real": {"width": 512, "height": 384, "ngf": 64, "num_upsampling_layers": "apf_more"},
    "small": {"width": 128, "height": 96, "ngf": 16, "num_upsampling_layers": "normal"},
}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--settings", choices=tuple(SETTINGS), default=None,
                   help="model and image size (default: real on a GPU, small on the CPU)%(default).0s")
    p.add_argument("--gpu", choices=device.GPU_MODES, default="auto", help="auto, on or off (CPU)")
    p.add_argument("--images", type=positive_int, default=None,
                   help="images per timed pass (default: 200 on a GPU, 8 on the CPU)%(default).0s")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed passes per measurement (median reported)")
    p.add_argument("--gen_batch", type=positive_int, default=None,
                   help="generation batch size (default: 10 on a GPU, 1 on the CPU)%(default).0s")
    p.add_argument("--fid_batch", type=positive_int, default=None,
                   help="Inception batch size (default: 50 on a GPU, 4 on the CPU)%(default).0s")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON%(default).0s")
    return p


def median_rate(run_pass, count, repeats):
    """Warm-up pass, then ``repeats`` timed passes of ``count`` images: (median images/s, all rates)."""
    run_pass()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_pass()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), rates


def passes_of(batch, count):
    """Batch sizes of one pass of ``count`` images: full batches and one remainder."""
    return [batch] * (count // batch) + ([count % batch] if count % batch else [])


def main(argv=None):
    args = build_parser().parse_args(argv)
    use_cuda = device.setup(args.gpu)
    settings = args.settings or ("real" if use_cuda else "small")
    cfg = SETTINGS[settings]
    count = args.images or (200 if use_cuda else 8)
    gen_batch = args.gen_batch or (10 if use_cuda else 1)
    fid_batch = min(args.fid_batch or (50 if use_cuda else 4), count)

    import jittor as jt
    from PIL import Image

    from models import convolution
    from models.inception import InceptionV3Features
    from models.networks import build_networks, one_hot
    from options import test_options
    from util.metrics import fid_stats

    jt.set_global_seed(0)
    rs = np.random.RandomState(0)
    w, h = cfg["width"], cfg["height"]
    opt, _, _ = test_options.from_values(input_path="unused", output_path="unused", name="bench",
                                         checkpoints_dir="/nonexistent", crop_size=w, ngf=cfg["ngf"],
                                         num_upsampling_layers=cfg["num_upsampling_layers"])
    generator = build_networks(opt, with_discriminator=False)["G"]
    generator.eval()
    labels = {n: jt.array(rs.randint(0, opt.label_nc, (n, h, w)).astype(np.int32))
              for n in set(passes_of(gen_batch, count))}

    def generate_pass():
        out = []
        for n in passes_of(gen_batch, count):
            with jt.no_grad():
                out.append(generator(one_hot(labels[n], opt.label_nc)).numpy())
        return out

    results = {"settings": settings, "size": f"{w}x{h}", "ngf": cfg["ngf"], "device": convolution.describe(use_cuda),
               "host": platform.processor() or platform.machine(), "images_per_pass": count, "repeats": args.repeats}
    print(f"benchmark on {results['device']}: settings {settings} ({w}x{h}, ngf {cfg['ngf']}), {count} images "
          f"per pass, {args.repeats} timed passes after one warm-up", flush=True)
    rate, rates = median_rate(generate_pass, count, args.repeats)
    results["generation"] = {"images_per_s": rate, "batch": gen_batch, "all": rates}
    print(f"generation: {rate:.2f} img/s", flush=True)

    images = [rs.randint(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(count)]

    def jpeg_pass():
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=95)
            np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    rate, rates = median_rate(jpeg_pass, count, args.repeats)
    results["jpeg_roundtrip"] = {"images_per_s": rate, "all": rates}
    print(f"JPEG write + read: {rate:.1f} img/s", flush=True)

    extractor = fid_stats.FeatureExtractor(InceptionV3Features(), "random", fid_batch)
    jt.sync_all()
    rate, rates = median_rate(lambda: extractor.features(iter(images), total=count), count, args.repeats)
    results["inception"] = {"images_per_s": rate, "batch": fid_batch, "all": rates}
    print(f"Inception features: {rate:.2f} img/s", flush=True)

    feats = rs.normal(size=(2100, fid_stats.FEATURE_DIMS))
    a = fid_stats.statistics_of(feats[:1050])
    b = fid_stats.statistics_of(feats[1050:])
    start = time.perf_counter()
    distance = fid_stats.frechet_distance(a, b)
    results["frechet_distance_s"] = time.perf_counter() - start
    results["frechet_trace_term"] = distance.method
    print(f"Frechet distance (2048 dims): {results['frechet_distance_s']:.1f} s (trace term {distance.method})",
          flush=True)

    per_1000 = {part: 1000 / results[part]["images_per_s"] for part in ("generation", "jpeg_roundtrip", "inception")}
    per_1000["frechet_distance"] = results["frechet_distance_s"]
    results["seconds_per_1000_images"] = dict(per_1000, total=sum(per_1000.values()))
    rows = [("generation", per_1000["generation"]), ("JPEG write + read", per_1000["jpeg_roundtrip"]),
            ("Inception features", per_1000["inception"]), ("Frechet distance", per_1000["frechet_distance"]),
            ("FID of 1000 generated images", results["seconds_per_1000_images"]["total"])]
    print(f"\nseconds for 1000 images at {w}x{h} ({results['device']}):")
    for name, seconds in rows:
        print(f"  {name:<30} {seconds:9.1f} s")
    if args.json:
        from util.core.checkpoint import write_text
        write_text(args.json, json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_main(main)
