"""Deep Compression (Han, Mao & Dally, ICLR 2016): weight sharing, Huffman coding, packed files.

Typical use on a pruned model::

    from prunekit.compression import CompressionConfig, attach_weight_sharing, compress_model

    spec = CompressionConfig(conv_bits=8, fc_bits=5)
    handle = attach_weight_sharing(model, spec)      # k-means; codebooks become the trainable tensors
    ...                                              # fine-tune with any optimizer / train loop
    handle.strip()                                   # plain weights = shared values
    report = compress_model(model, "model.pkdc", spec)
    print(report.to_markdown())
    state, meta = decompress_file("model.pkdc")

See ``docs/compression.md`` for the file format and the byte accounting.
"""

from __future__ import annotations

from prunekit._deprecation import renamed
from prunekit.compression.api import (
    CompressedModel,
    compress_model,
    decode_compressed,
    decompress_file,
    load_compressed_into,
    read_compressed,
)
from prunekit.compression.huffman import HuffmanCode
from prunekit.compression.kmeans import kmeans_1d
from prunekit.compression.packed import FORMAT_VERSION
from prunekit.compression.quantize import QuantizationResult, QuantizedLayer, quantize_model, quantize_tensor, share_weights
from prunekit.compression.report import CompressionReport, LayerAccount
from prunekit.compression.sharing import (
    SharedWeight,
    WeightSharingHandle,
    attach_weight_sharing,
    strip_weight_sharing,
)
from prunekit.compression.spec import CompressionConfig

__all__ = [
    "FORMAT_VERSION",
    "CompressedModel",
    "CompressionReport",
    "CompressionConfig",
    "HuffmanCode",
    "LayerAccount",
    "QuantizationResult",
    "QuantizedLayer",
    "SharedWeight",
    "WeightSharingHandle",
    "attach_weight_sharing",
    "compress_model",
    "decode_compressed",
    "decompress_file",
    "kmeans_1d",
    "load_compressed_into",
    "quantize_model",
    "quantize_tensor",
    "read_compressed",
    "share_weights",
    "strip_weight_sharing",
]


__getattr__ = renamed(__name__, {"CompressionSpec": ("CompressionConfig", lambda: CompressionConfig)})
