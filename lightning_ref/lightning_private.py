"""The private LightningCLI methods this project overrides, because Lightning has no public hook for what they do.

- `_prepare_subcommand_parser`: the one place a subcommand's parser is built; `fit --test` is an option of `fit` only
  (add_arguments_to_parser runs for every subcommand without saying which).
- `_parse_ckpt_path`: the one call between the parse and seeding, where LightningCLI reads `--ckpt_path` again
  (torch.load) to take the model's hyperparameters into the config; here they come from the checkpoint the CLI has
  read and checked once, after refusing a model option that contradicts them (LightningCLI would replace it
  silently), and the options left unset take the recipe's or the code's values.

tests/test_lightning_private.py fails, naming the attribute, when a Lightning release renames or drops one of them;
pyproject.toml pins the Lightning releases this was tested with.
"""

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

# (owner, attribute): every private Lightning name this project uses.
PRIVATE_NAMES = ((LightningCLI, "_prepare_subcommand_parser"), (LightningCLI, "_parse_ckpt_path"))


class SubcommandHooks(LightningCLI):
    """LightningCLI with two public-named hooks in place of the private methods above."""

    def add_subcommand_arguments(self, parser: LightningArgumentParser, subcommand: str) -> None:
        """Add arguments to the parser of `subcommand` only."""

    def resolve_config(self) -> None:
        """Complete self.config after the parse, before seeding (by default LightningCLI's own: the model's
        hyperparameters from --ckpt_path)."""
        super()._parse_ckpt_path()

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self.add_subcommand_arguments(parser, subcommand)
        return parser

    def _parse_ckpt_path(self) -> None:
        self.resolve_config()
