"""The command-line parser generated from `Config`'s type hints, one-line errors and exit codes.

Imports neither torch nor Lightning: `--help` of every command answers in well under a second.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from lit_regularize.config import (FIELDS, GROUPS, Config, check_keys, fields, flag, import_plugins, load_yaml,
                                   make_config, preset_defaults, resolve_config_path)
from lit_regularize.errors import ConfigError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (with 'did you mean' for a mistyped flag), not a usage block."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments"):
            flags = [s for a in self._actions for s in a.option_strings]
            typos = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("-")]
            close = [m[0] for m in (difflib.get_close_matches(t, flags, n=1) for t in typos) if m]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
        self.exit(EXIT_USER_ERROR, f"error: {message}{hint} (see --help)\n")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _peek(argv: Sequence[str]) -> tuple[str, str]:
    """--data and --reg as given (flags, else the --config YAML), so --help can show the presets' defaults; the
    --plugins modules (flags, else the YAML) are imported first, so their regularizers' flags and presets exist."""
    peek = argparse.ArgumentParser(add_help=False)
    for name in ("config", "data", "reg"):
        peek.add_argument(flag(name))
    peek.add_argument("--plugins", nargs="+")
    known, _ = peek.parse_known_args(list(argv))
    from_yaml: dict[str, Any] = {}
    if known.config:
        try:
            from_yaml = load_yaml(resolve_config_path(known.config))
        except ConfigError:
            pass  # reported properly when the real parse reads it
    plugins = known.plugins or from_yaml.get("plugins") or []
    import_plugins([plugins] if isinstance(plugins, str) else plugins)
    data = known.data or from_yaml.get("data") or FIELDS["data"].default
    reg = known.reg or from_yaml.get("reg") or FIELDS["reg"].default
    return str(data), str(reg)


def add_config_args(parser: argparse.ArgumentParser, argv: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
    """One flag per setting, grouped as in --help; defaults SUPPRESSed so only given flags override YAML."""
    data, reg = _peek(argv)
    defaults = preset_defaults(data, reg)
    parser.add_argument("--config", metavar="FILE",
                        help="YAML of settings, or the name of a shipped experiment (e.g. imdb_l2); flags override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML (valid for --config) and exit")
    groups = {g: parser.add_argument_group(f"{g} settings") for g in GROUPS}
    for name, s in fields().items():
        if name in skip or s.internal:
            continue
        default = defaults[name]
        help_text = s.help_text()
        if default is not None and default != [] and "default" not in help_text:
            help_text += f" (default: {_shown(default)})"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if s.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif s.kind is list:
            kwargs.update(nargs="+", type=s.item, metavar=s.metavar or "I")
        else:
            kwargs["type"] = s.kind
            choices = s.choice_values()
            # Choices are shown, but checked by Config's validation, which suggests the closest one.
            kwargs["metavar"] = "{" + ",".join(choices) + "}" if choices else s.metavar or name.upper()
        groups[s.group].add_argument(flag(name), **kwargs)
        if s.negation is not None:
            groups[s.group].add_argument("--no-" + flag(name)[2:], dest=name, action="store_const", const=s.negation,
                                         default=argparse.SUPPRESS, help=f"same as {flag(name)} {s.negation}")


def command_parser(prog: str, doc: str, argv: Sequence[str] = (), skip: Sequence[str] = (),
                   config_flags: bool = True) -> OneLineParser:
    """A parser whose description is doc's first paragraph and whose epilog (examples) keeps its line breaks."""
    summary, _, rest = (doc or "").strip().partition("\n\n")
    parser = OneLineParser(prog=prog, usage=f"{prog} [options]", description=summary, epilog=rest or None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    if config_flags:
        add_config_args(parser, argv, skip)
    return parser


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--config YAML overridden by the Config flags that were given (not yet merged with presets)."""
    overrides: dict[str, Any] = {}
    if getattr(args, "config", None):
        path = resolve_config_path(args.config)
        overrides.update(load_yaml(path))
        check_keys(overrides, f"--config {args.config}")
    overrides.update({k: v for k, v in vars(args).items() if k in FIELDS})
    return overrides


def config_from_args(args: argparse.Namespace) -> Config:
    """The resolved Config of parsed arguments."""
    source = f"--config {args.config} / flags" if getattr(args, "config", None) else "flags"
    return make_config(given_settings(args), source)


def print_config_and_exit(cfg: Config) -> NoReturn:
    """--print-config: the resolved config as YAML on stdout."""
    from lit_regularize.config import to_yaml

    sys.stdout.write(to_yaml(cfg))
    raise SystemExit(0)


def guarded(main: Callable[[Optional[Sequence[str]]], int]) -> Callable[[Optional[Sequence[str]]], int]:
    """Run a command's main: user errors print one line and exit 2, interruptions (Ctrl-C, SIGTERM: from start-up
    on, not only while a run trains) exit 130 with one line."""
    def wrapper(argv: Optional[Sequence[str]] = None) -> int:
        from lit_regularize.errors import RunInterrupted, Terminated, on_sigterm

        def terminate(signum: int, frame: Any) -> None:
            # without it a SIGTERM while torch loads killed the process with no line and status 143
            raise Terminated()
        with on_sigterm(terminate):  # run() puts its own handler around a run
            try:
                return main(argv)
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                return EXIT_USER_ERROR
            except RunInterrupted as e:
                print(f"{e}", file=sys.stderr)
                return EXIT_INTERRUPTED
            except (KeyboardInterrupt, Terminated) as e:  # before a run folder existed, or after it was written
                print("interrupted (SIGTERM)" if isinstance(e, Terminated) else "interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
    wrapper.__doc__ = main.__doc__
    return wrapper


__all__ = ["OneLineParser", "add_config_args", "command_parser", "given_settings", "config_from_args",
           "print_config_and_exit", "guarded", "EXIT_USER_ERROR", "EXIT_INTERRUPTED"]
