"""The quick loop's guard (tests/conftest.py): a test not marked slow cannot train."""

from __future__ import annotations

import pytest


def test_a_quick_test_that_trains_fails_naming_the_marker():
    import pytorch_lightning as pl

    with pytest.raises(RuntimeError, match=r"mark it @pytest.mark.slow"):
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(pl.LightningModule())
