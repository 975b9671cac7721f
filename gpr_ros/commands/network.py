"""``gpr-ros train``: train the GPR network on a generated dataset (paper Sec. VI-A)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``train`` command."""
    tr = sub.add_parser(
        'train', help='train (or resume) the GPR network on a dataset folder',
        description='Train stage 1 and stage 2 end to end with checkpoints every epoch. '
                    'Running the same command again resumes from OUT/last.pt. Under torchrun '
                    'the same command trains with DDP (gloo on CPU, nccl on CUDA).')
    tr.add_argument('--data', type=Path, required=True, help='dataset folder (gpr-ros dataset '
                    'generate)')
    tr.add_argument('--out', type=Path, required=True, help='run folder (checkpoints, metrics)')
    tr.add_argument('--preset', choices=('cpu', 'paper'), default='cpu',
                    help='network size: cpu (4,096 points, trains on 2 cores) or paper '
                         '(16,384 points; wants a GPU) (default cpu)')
    tr.add_argument('--epochs', type=int, default=30, help='epochs (default 30)')
    tr.add_argument('--batch-size', type=int, default=2, help='scenes per step (default 2)')
    tr.add_argument('--optimizer', choices=('sgd', 'adam'), default='sgd',
                    help='sgd with LR 0.02 as the paper (default), or adam')
    tr.add_argument('--lr', type=float, default=None,
                    help='initial learning rate (default 0.02 for sgd, 1e-3 for adam)')
    tr.add_argument('--lr-drop-at', type=int, nargs='+', default=(), metavar='EPOCH',
                    help='divide the LR by 10 from these epochs on, whatever the validation '
                         'loss does (a fixed step schedule; default: divide it when the '
                         'validation loss stops improving for 3 epochs)')
    tr.add_argument('--seed', type=int, default=0, help='seed of the run (default 0)')
    tr.add_argument('--loader-workers', type=int, default=1,
                    help='DataLoader processes that load and group scenes (default 1)')
    tr.add_argument('--threads', type=int, default=1,
                    help='torch CPU threads per process (default 1: on 2 cores the loader '
                         'takes the other one)')
    tr.add_argument('--malloc-retain-mb', type=int, default=256,
                    help='freed memory the process keeps for reuse instead of returning it to '
                         'the OS, MB (glibc; default 256: same results, and the training steps '
                         'took 48-51 instead of 62-63 s per 200 on a 2-core VM, no longer '
                         'page-faulting their large buffers in again; 0: the C library\'s '
                         'defaults)')
    tr.add_argument('--max-steps-per-epoch', type=int, default=0,
                    help='cut epochs short (0: whole dataset)')
    tr.add_argument('--init-from', type=Path, default=None,
                    help='start a new run from this checkpoint\'s weights (fresh optimizer '
                         'and schedule; ignored when OUT/last.pt is resumed)')
    tr.add_argument('--train-parts', choices=('all', 'stage2'), default='all',
                    help='all (default), or stage2: freeze the backbone and stage 1 and train '
                         'the refinement network only (fine-tuning with --init-from)')
    tr.add_argument('--confidence-target', choices=('proposal', 'refined'),
                    default='proposal',
                    help='what the stage-2 confidence learns: proposal (the proposal is '
                         'within D 0.02 of a ground-truth grasp, default) or refined (the '
                         'refined grasp is within D 0.01 and 5 mm of width of one)')
    tr.add_argument('--proposals-train', type=int, default=None,
                    help='proposals sampled per scene to train stage 2 (default: the '
                         'preset\'s, 64 for cpu, 256 for paper as the paper)')
    tr.add_argument('--device', default='cpu', help='cpu or cuda[:N] (default cpu)')
    tr.add_argument('--no-resume', action='store_true', help='start over even if OUT/last.pt '
                    'exists')
    tr.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import torch

    from gpr_ros.core.errors import GprError
    from gpr_ros.core.network.config import NetworkConfig, TrainConfig
    from gpr_ros.core.network.train import train

    torch.set_num_threads(max(1, args.threads))
    from gpr_ros.core.network.inference import retain_freed_memory
    try:
        retain_freed_memory(args.malloc_retain_mb)  # same results, fewer page faults
    except ValueError as err:
        print(f'gpr-ros train: --malloc-retain-mb: {err}', file=sys.stderr)
        return 2
    preset = NetworkConfig.cpu if args.preset == 'cpu' else NetworkConfig.paper
    overrides: dict[str, object] = {'confidence_target': args.confidence_target}
    if args.proposals_train is not None:
        overrides['proposals_train'] = args.proposals_train
    lr = args.lr if args.lr is not None else (0.02 if args.optimizer == 'sgd' else 1e-3)
    try:
        network = preset(**overrides)
        config = TrainConfig(network=network, epochs=args.epochs, batch_size=args.batch_size,
                             optimizer=args.optimizer, lr=lr, seed=args.seed,
                             lr_drop_epochs=tuple(args.lr_drop_at),
                             num_workers=args.loader_workers,
                             max_steps_per_epoch=args.max_steps_per_epoch,
                             train_parts=args.train_parts)
        result = train(config, args.data, args.out, progress=True, resume=not args.no_resume,
                       device=args.device, init_from=args.init_from)
    except GprError as err:
        print(f'gpr-ros train: {err}', file=sys.stderr)
        return 1
    if int(os.environ.get('RANK', '0')) != 0:  # under torchrun only rank 0 reports
        return 0
    print(f'finished epoch {result.epoch}: {result.metrics}')
    print(f'checkpoints: {args.out / "best.pt"}, {args.out / "last.pt"}; '
          f'curves: {args.out / "metrics.png"}')
    return 0
