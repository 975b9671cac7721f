"""``gpr-ros evaluate``: grasp width and pose accuracy of a trained network (paper Sec. VI-B)."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    ev = sub.add_parser(
        'evaluate', help='grasp width and pose accuracy of a checkpoint (Tables I and II)',
        description='Run the network on every scene of a dataset folder, keep the proposals '
                    'after NMS and their stage-2 refinements, drop those whose own confidence '
                    'is below 0.5, match each to the nearest ground-truth grasp by the grasp '
                    'distance D and report width accuracy (Table I) and pose accuracy '
                    '(Table II) for both stages. Prints the Markdown report and writes it '
                    'with a JSON twin.')
    ev.add_argument('--model', type=Path, required=True, help='checkpoint (.pt) of gpr-ros train')
    ev.add_argument('--data', type=Path, required=True,
                    help='dataset folder (gpr-ros dataset generate), e.g. the novel test split')
    ev.add_argument('--out', default=None,
                    help='an existing folder (or one given with a trailing /) receives '
                         'evaluation.md and evaluation.json; anything else is a prefix: '
                         'PREFIX.md and PREFIX.json (default: next to the model)')
    ev.add_argument('--max-scenes', type=int, default=None,
                    help='evaluate only the first N scenes (default: all)')
    ev.add_argument('--confidence-threshold', type=float, default=0.5,
                    help='predictions scoring below this are the negatives filtered out '
                         '(default 0.5; 0 keeps every proposal)')
    ev.add_argument('--pose-passes', type=int, default=None,
                    help='stage-2 passes over the pose (default 2; 1: the paper\'s single '
                         'refinement; docs/network.md)')
    ev.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ev.add_argument('--device', default='cpu', help='cpu or cuda[:N] (default cpu)')
    ev.set_defaults(func=_evaluate)


def output_paths(model: Path, out: str | None) -> tuple[Path, Path]:
    """Where the report goes: ``(markdown, json)``.

    :param model: the checkpoint (default: its folder).
    :param out: the ``--out`` argument as typed: an existing folder or a path ending in a
        slash is a folder, anything else a prefix (a ``.md`` or ``.json`` suffix is dropped).
    :return: the two paths.
    """
    if out is None:
        folder = model.parent
    elif Path(out).is_dir() or out.endswith(('/', '\\')):
        folder = Path(out)
    else:
        prefix = Path(out)
        stem = prefix.with_suffix('') if prefix.suffix in ('.md', '.json') else prefix
        return stem.parent / f'{stem.name}.md', stem.parent / f'{stem.name}.json'
    return folder / 'evaluation.md', folder / 'evaluation.json'


def _evaluate(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from gpr_ros.core.errors import GprError
    from gpr_ros.core.network.evaluate import evaluate, plot_evaluation

    if args.max_scenes is not None and args.max_scenes < 1:
        print(f'gpr-ros evaluate: --max-scenes must be >= 1, got {args.max_scenes}',
              file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    bar = tqdm(desc='scenes', unit='scene', file=sys.stderr, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = evaluate(args.model, args.data, max_scenes=args.max_scenes,
                          progress=progress, device=args.device,
                          confidence_threshold=args.confidence_threshold,
                          pose_passes=args.pose_passes)
    except GprError as err:
        print(f'gpr-ros evaluate: {err}', file=sys.stderr)
        return 1
    finally:
        bar.close()
    md_path, json_path = output_paths(args.model, args.out)
    markdown = result.to_markdown()
    print(markdown)
    try:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown)
        json_path.write_text(result.to_json() + '\n')
        png_path = plot_evaluation(result, md_path.with_suffix('.png'))
    except OSError as err:
        print(f'gpr-ros evaluate: cannot write the report ({err})', file=sys.stderr)
        return 1
    print(f'wrote {md_path}, {json_path} and {png_path}')
    return 0
