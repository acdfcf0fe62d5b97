"""dms: the Device Management Service daemon (`nunet-dms`) and its CLI (`nunet`)."""

__version__ = "0.1.0"
