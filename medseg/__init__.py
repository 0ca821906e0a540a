"""medseg — medical image segmentation research on small datasets.

The data flow (see README): raw dataset → reader → split file → 2D slice cache →
MONAI transforms → DataModule → model (conv blocks with one regularizer slot) →
LightningModule → checkpoint + metrics files → experiment grid → report.
"""

__version__ = "0.1.0"
