"""Jittor datasets: paired training data and label-only generation input.

Samples are dicts of NumPy arrays (collated and turned into Jittor arrays by
Jittor's loader): ``label`` uint8 [H, W] class ids, ``image`` float32
[3, H, W] in [-1, 1], ``path`` and ``error``; with ``edges`` also ``edge``, the
photo's Sobel edge map (``data.edge_maps``, computed on the photo as read, then
scaled, cropped and flipped with it) as a float32 [3, H, W] image in [-1, 1].
A file that fails to load does not kill a worker process: the sample carries
the error message and the training loop raises it in the main process (see
``raise_batch_errors``).

Randomness: the order of each epoch and every sample's crop/flip come from
(seed, epoch, index) alone, never from global state, so a run resumed at any
epoch sees exactly the data it would have seen without the stop.
"""

import os

import numpy as np
from jittor.dataset import Dataset

from data import folders, transforms
from data.edge_maps import sobel_edge_map
from data.image_io import read_image, read_label
from util.core.errors import DatasetError, UserError


def sample_rng(seed, epoch, index):
    return np.random.RandomState(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochSampler:
    """Sampler whose order depends only on (seed, epoch); indices carry the epoch.

    Index ``epoch * n + i`` tells ``__getitem__`` which epoch's augmentation to use,
    also inside Jittor's worker processes, which only see the index list.
    """

    def __init__(self, n, seed, shuffle=True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self, epoch):
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.RandomState(np.random.SeedSequence([self.seed, epoch, 7]).generate_state(1)[0]).permutation(self.n)

    def __iter__(self):
        return iter((self.order(self.epoch) + self.epoch * self.n).tolist())

    def __len__(self):
        return self.n


class ClosingWorkers:
    """Mixin: ``close()`` ends the loader worker processes now; ``with dataset:`` closes at the end.

    Close a dataset that has ``num_workers`` > 0 when done with it. Left alive until the interpreter
    shuts down, idle workers can fail on the shared locks that shutdown finalises, and a failing Jittor
    worker interrupts (SIGINT) the main process, which then ends by that signal instead of its own exit
    code.
    """

    def close(self, timeout=10):
        workers = getattr(self, "workers", None)
        if not workers:
            return
        self.terminate()  # SIGTERM
        for worker in workers:
            worker.p.join(timeout)
        del self.workers  # Jittor's reset() and __del__ skip a dataset without workers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class PairedDataset(ClosingWorkers, Dataset):
    """Photo/label pairs of ``root``/imgs and ``root``/labels with random crop and flip; ``exclude``: file
    stems left out (``excluded``: how many of the photos that removed); ``edges``: samples carry the photos'
    Sobel edge maps too."""

    def __init__(self, root, label_nc, crop_w, crop_h, load_size, allow_flip=True, seed=0,
                 max_size=None, batch_size=1, num_workers=0, shuffle=True, drop_last=True, dontcare_255=False,
                 exclude=frozenset(), edges=False):
        super().__init__()
        self.edges = edges
        self.pairs = folders.training_pairs(root, max_size, exclude)
        self.excluded = len(exclude) and sum(os.path.splitext(f)[0] in exclude for f in
                                             folders.list_files(os.path.join(root, "imgs"),
                                                                folders.IMAGE_EXTENSIONS))
        self.label_nc, self.crop_w, self.crop_h = label_nc, crop_w, crop_h
        self.dontcare_255 = dontcare_255
        self.load_size, self.allow_flip, self.seed = load_size, allow_flip, seed
        self.sampler = EpochSampler(len(self.pairs), seed, shuffle)
        if drop_last and len(self.pairs) < batch_size:
            raise DatasetError(f"{root}: {len(self.pairs)} training pair(s) is fewer than --batchSize {batch_size}.")
        self.set_attrs(total_len=len(self.pairs), batch_size=batch_size, shuffle=False,
                       num_workers=num_workers, drop_last=drop_last)

    def set_epoch(self, epoch):
        """Select the order and augmentation of ``epoch`` (call before iterating)."""
        self.sampler.set_epoch(epoch)
        if hasattr(self, "workers"):
            # Jittor's workers refresh their shared index list one epoch late; start them
            # anew so that they load exactly this epoch's indices.
            self.reset()

    def num_batches(self):
        n = len(self.pairs)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __getitem__(self, index):
        epoch, i = divmod(int(index), len(self.pairs))
        img_path, label_path = self.pairs[i]
        try:
            rgb = read_image(img_path)
            label = read_label(label_path, self.label_nc, self.dontcare_255)
            if rgb.shape[:2] != label.shape:
                raise DatasetError(f"{img_path} is {rgb.shape[1]}x{rgb.shape[0]} but {label_path} is "
                                   f"{label.shape[1]}x{label.shape[0]}.")
            geometry = (self.load_size, self.crop_w, self.crop_h, sample_rng(self.seed, epoch, i), self.allow_flip)
            if self.edges:
                edge_image = np.repeat(sobel_edge_map(rgb)[:, :, None], 3, axis=2)  # read as RGB, as COESAK's
                rgb, label, (edge,) = transforms.transform_pair(rgb, label, *geometry, also=[edge_image])
            else:
                rgb, label = transforms.transform_pair(rgb, label, *geometry)
            error = ""
        except UserError as err:
            rgb = edge = np.zeros((self.crop_h, self.crop_w, 3), np.uint8)
            label = np.zeros((self.crop_h, self.crop_w), np.uint8)
            error = str(err)
        sample = {"label": label, "image": transforms.image_to_array(rgb),
                  "path": os.path.basename(img_path), "error": error}
        if self.edges:
            sample["edge"] = transforms.image_to_array(edge)
        return sample


class LabelFolderDataset(ClosingWorkers, Dataset):
    """Label maps of a folder, resized (nearest) to the network size; keeps each map's own size."""

    def __init__(self, folder, label_nc, crop_w, crop_h, max_size=None, batch_size=1, num_workers=0,
                 dontcare_255=False):
        super().__init__()
        self.paths = folders.test_labels(folder, max_size)
        self.label_nc, self.crop_w, self.crop_h = label_nc, crop_w, crop_h
        self.dontcare_255 = dontcare_255
        self.set_attrs(total_len=len(self.paths), batch_size=batch_size, shuffle=False,
                       num_workers=num_workers, drop_last=False)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            label = read_label(path, self.label_nc, self.dontcare_255)
            error = ""
        except UserError as err:
            label = np.zeros((self.crop_h, self.crop_w), np.uint8)
            error = str(err)
        height, width = label.shape
        label = transforms.resize_label_map(label, (self.crop_w, self.crop_h))
        return {"label": label, "path": os.path.basename(path), "error": error,
                "orig_size": np.array([width, height], np.int32)}


def raise_batch_errors(batch):
    """Raise the first loading error a batch carries (in the main process)."""
    errors = [e for e in batch.get("error", []) if e]
    if errors:
        raise DatasetError(errors[0] + (f" ({len(errors) - 1} more file(s) in this batch failed too.)"
                                        if len(errors) > 1 else ""))
