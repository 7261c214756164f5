"""Datasets and loaders from a config (``dataset.kind`` picks the class in mvn.registry), for
training and for sharded evaluation."""
import inspect
import json
import os

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from mvn import registry
from mvn.datasets import crop_cache
from mvn.utils import dist
from mvn.utils.cfg import ConfigError
from mvn.utils.io import atomic_open, file_lock


def dataset_class(kind):
    """The PoseDataset subclass registered as ``kind``; ValueError listing the known kinds otherwise."""
    return registry.resolve(registry.entry(registry.DATASETS, kind, 'dataset kind'))


def synthetic_arguments(cfg):
    """``dataset.synthetic`` as arguments of the dataset kind's generator (lists as tuples);
    a key the generator does not take is a ConfigError naming the ones it does."""
    generator = dataset_class(cfg.dataset.kind).make_synthetic
    if generator is None:
        raise ConfigError("config key 'dataset.synthetic': dataset kind '%s' has no synthetic data" % cfg.dataset.kind)
    parameters = inspect.signature(generator).parameters
    known = [name for name, p in parameters.items() if p.kind == p.KEYWORD_ONLY and name != 'progress']
    for key in cfg.dataset.synthetic:
        if key not in known:
            raise ConfigError("unknown config key 'dataset.synthetic.%s'; choose from %s" % (key, ', '.join(known)))
    return generator, {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.dataset.synthetic.items()}


def ensure_synthetic_data(cfg, log=print):
    """For a synthetic config, generate the dataset on first use, and again when
    ``dataset.synthetic`` changes. A stamp beside the training labels, written after everything
    else, records the arguments of complete data. Every process looks in turn, under a file lock:
    the first makes the data, the others find it current, and nodes that share no folder each
    make their own copy (the generator is seeded, so the copies are identical)."""
    spec = cfg.dataset.synthetic
    if not spec:
        return
    generator, arguments = synthetic_arguments(cfg)
    paths = (cfg.dataset.train_labels_path, cfg.dataset.val_labels_path)
    stamp = cfg.dataset.train_labels_path + '.synthetic.json'
    os.makedirs(os.path.dirname(os.path.abspath(stamp)), exist_ok=True)
    with file_lock(stamp + '.lock'):
        try:
            with open(stamp) as f:
                current = json.load(f) == spec
        except (OSError, ValueError):
            current = False
        if not (current and all(os.path.isfile(p) for p in paths)):
            log('generating the synthetic dataset under %s' % cfg.dataset.root)
            generator(cfg.dataset.root, *paths, progress=dist.is_main_process(), **arguments)
            with atomic_open(stamp, 'w') as f:
                json.dump(spec, f, sort_keys=True)
    dist.barrier()      # where locks are refused, no rank reads files another is still writing


def labels_path(cfg, split):
    return cfg.dataset.train_labels_path if split == 'train' else cfg.dataset.val_labels_path


def build_dataset(cfg, split, shard=False, retain_every_n_frames=1):
    """The dataset of ``split`` ('train' or 'val'); with ``shard`` only this rank's contiguous part
    (of frames 0, n, 2n, ... of the file for ``retain_every_n_frames`` n)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if shard and dist.is_distributed() else (None, None)
    return dataset_class(cfg.dataset.kind)(
        root=cfg.dataset.root, labels_path=labels_path(cfg, split), image_shape=cfg.model.image_shape,
        keypoints_2d=cfg.dataset.keypoints_2d, rank=rank, world_size=world, progress=dist.is_main_process(),
        retain_every_n_frames=retain_every_n_frames, crop_cache=crop_cache_path(cfg, split))


def crop_cache_path(cfg, split):
    """The crop cache file ``dataset.crop_cache`` gives the labels of ``split``, or None: for
    'auto' the one beside the labels if it exists (it is checked when opened), for a folder the
    file named after the labels in it (which must exist)."""
    setting, labels = cfg.dataset.crop_cache, labels_path(cfg, split)
    if not setting:
        return None
    if setting == 'auto':
        path = crop_cache.default_path(labels)
        return path if crop_cache.started(path) else None
    if not os.path.isdir(setting):
        raise ConfigError("config key 'dataset.crop_cache': %s is not a folder ('auto', '' or a folder of crop "
                          "caches)" % setting)
    return os.path.join(setting, os.path.basename(crop_cache.default_path(labels)))


def loader_options(num_workers, pin_memory):
    """DataLoader settings of every loader. Workers persist across epochs: a run evaluates after
    every epoch, and without this each of the two loaders would fork its workers again every
    epoch, and every new worker would start from an empty pipeline (its first batch of 512
    decodes comes seconds later) before the device gets anything. The prefetch depth stays at
    PyTorch's 2 batches per worker: with 14 workers that is 28 batches (2 GiB of 192x256 crops)
    already in flight, and more depth cannot raise the rate workers decode at, only the memory.
    Pinned memory (CUDA) lets the prefetcher's copies to the device run asynchronously."""
    return dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)


def build_train_loader(cfg, dataset, seed, pin_memory):
    """Shuffled training batches; DistributedSampler under torch.distributed (call
    ``loader.sampler.set_epoch``), otherwise a sampler whose generator the caller reseeds every
    epoch (``mvn.training.reseed_loader``)."""
    options = loader_options(cfg.train.num_workers, pin_memory)
    if dist.is_distributed():
        sampler = DistributedSampler(dataset, shuffle=cfg.train.shuffle, seed=seed)
    elif cfg.train.shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler,
                      generator=torch.Generator().manual_seed(seed), **options)


def build_eval_loader(cfg, dataset, pin_memory):
    """Batches of a (sharded) dataset in file order."""
    return DataLoader(dataset, batch_size=cfg.val.batch_size, shuffle=False,
                      **loader_options(cfg.val.num_workers, pin_memory))
