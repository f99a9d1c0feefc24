"""The messages a manualnet-train run would print that its user cannot act on, each silenced where it arises: one
message of one logger or warning category, nothing else."""

import logging
import warnings

# Lightning's advertisements for its cloud services (litlogger, litmodels): an INFO record of this logger, printed by
# every Trainer that has no LitLogger. Nothing in a run needs them.
TIP_LOGGER = "lightning.pytorch.utilities.rank_zero"
TIP = "💡 Tip: For seamless cloud"


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TIP)


def silence_unactionable() -> None:
    """Silence Lightning's cloud tips, the LeafSpec deprecation that Lightning's own code raises in torch and
    EMAWeightAveraging's sharding warning (idempotent; the training CLI calls it before each run)."""
    logger = logging.getLogger(TIP_LOGGER)
    if not any(isinstance(f, _DropTips) for f in logger.filters):
        logger.addFilter(_DropTips())
    # torch deprecates LeafSpec, which lightning.pytorch.utilities._pytree (Lightning 2.6) still builds in every run:
    # a FutureWarning about Lightning's code, for Lightning's authors; only this message, only from that module.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    # EMAWeightAveraging warns about memory for any module that overrides configure_model, which it assumes shards
    # layers; TwoLayerClassifier's configure_model only builds the net from the data module's shapes (no sharding).
    warnings.filterwarnings("ignore", message=r"You're using the WeightAveraging callback with a model that overrides")
