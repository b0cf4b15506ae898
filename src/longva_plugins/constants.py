"""Token-id conventions shared by the model, the adapter and training (LLaVA's ``constants.py``)."""

#: The placeholder id that stands for one image or video in ``input_ids`` (LLaVA / LongVA).
IMAGE_TOKEN_INDEX = -200
#: Label of positions that carry no loss (PyTorch's ``cross_entropy`` default ``ignore_index``).
IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX", "IMAGE_TOKEN_INDEX"]
