"""s2i_lib: the library behind the s2i-course notebooks (speech-to-image generation, S2IGAN)."""
from .config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "load_config"]
__version__ = "0.1.0"
