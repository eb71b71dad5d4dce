"""Everything read from a GGUF file that every device needs: metadata fields, the model config, the tokenizer and
the tensor types with their block sizes."""

from .config import SUPPORTED_ARCHITECTURES, Config, read_config
from .quant_types import QUANTIZED_TYPES, SUPPORTED_TYPES, block_size, type_id
from .reader import array_length, field, open_gguf
from .spm import SpmTokenizer
from .tokenizer import Tokenizer

__all__ = ["SUPPORTED_ARCHITECTURES", "Config", "read_config", "QUANTIZED_TYPES", "SUPPORTED_TYPES", "block_size",
           "type_id", "array_length", "field", "open_gguf", "Tokenizer", "SpmTokenizer"]
