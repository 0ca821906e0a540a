"""Training and evaluation: LightningModule, losses, metrics, run folders, checkpoints."""
