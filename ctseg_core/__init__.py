"""ctseg core: loading, models, inference, training, annotation store. Never imports Qt."""

__version__ = "0.1.0"
