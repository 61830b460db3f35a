"""The provider emulator: one ASGI app speaking WaveSpeed v3 and Vtrix, with injectable faults."""

from .emulator import Emulator
from .faults import Fault
from .serve import serve_emulator
from .state import EmuJob, RecordedCall, Upload, VideoSpec

__all__ = ["EmuJob", "Emulator", "Fault", "RecordedCall", "Upload", "VideoSpec", "serve_emulator"]
