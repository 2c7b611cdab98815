"""The one exception type of hwmodels, so callers can catch cost-model input errors precisely."""


class HwModelError(ValueError):
    """Bad input to the hardware cost model: unknown name, malformed data file, impossible config."""
