"""``medseg config show`` — the resolved run config, every key with its one-line doc."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

EXAMPLE = """examples:
  medseg config show configs/cpu/pancreas_unet.yaml
  medseg config show configs/cpu/pancreas_unet.yaml regularizer.name=heuristic regularizer.k=3
  medseg config show configs/cpu/pancreas_unet.yaml > outputs/my_run.yaml   # complete, commented

The output is valid YAML: the defaults filled in, the overrides applied, each key's doc
as a comment (regularizer parameters: the regularizer's constructor arguments)."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("config", help="show a resolved run config with each key's doc",
                       description="Inspect run configs.", epilog=EXAMPLE, formatter_class=HelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="<action>", required=True)
    show = actions.add_parser("show", help="print the resolved config (defaults + file + overrides)",
                              description="Print the resolved config of a run config file with key=value "
                              "overrides applied, every key documented.", epilog=EXAMPLE,
                              formatter_class=HelpFormatter)
    show.add_argument("config", help="run config (YAML), e.g. configs/cpu/pancreas_unet.yaml")
    show.add_argument("overrides", nargs="*", metavar="key=value", default=argparse.SUPPRESS,
                      help="dotted overrides, e.g. train.epochs=2")
    show.set_defaults(func=run)


def _value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def annotated(cfg: dict[str, Any]) -> list[str]:
    """YAML lines of a resolved config, each key followed by its doc as a comment."""
    from ..config import SECTION_TYPES, RunConfig

    seed_doc = RunConfig.__dataclass_fields__["seed"].metadata["doc"]
    lines = [f"{'seed: ' + _value(cfg['seed']):44s} # {seed_doc}"]
    for name, section in SECTION_TYPES.items():
        docs = section.keys_doc()
        lines.append(f"{name + ':':44s} # {(section.__doc__ or '').strip().splitlines()[0]}")
        for sub, value in cfg[name].items():
            doc = docs.get(sub, f"parameter of regularizer '{cfg['regularizer']['name']}' (its constructor)")
            lines.append(f"{'  ' + sub + ': ' + _value(value):44s} # {doc}")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..config import load_config

    cfg = load_config(args.config, getattr(args, "overrides", []), require_data=False)
    print(f"# {args.config}, resolved (medseg config show)")
    print("\n".join(annotated(cfg)))
    return 0
