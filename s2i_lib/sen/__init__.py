"""The speech embedding network (SEN): speech encoder (SED), image encoder (IED) over frozen,
cached backbone features, matching + distinctive losses, retrieval metrics (docs/paper_notes.md §2 to §5)."""
from .backbones import (BACKBONES, BackboneSpec, FrozenBackbone, augmented_views, backbone_spec,
                        cache_backbone_features, load_backbone, measure_features_per_second,
                        view_params)
from .image_encoder import ImageEncoder, image_encoder_from_config
from .losses import distinctive_loss, make_classifier, matching_loss
from .retrieval import (attribute_precision_at_k, attribute_precision_chance, average_precision, class_map,
                        class_map_one_query_per_class, cosine_similarity, expected_average_precision,
                        first_query_per_class, recall_at_k)
from .speech_encoder import MIN_FRAMES, SpeechEncoder, conv_output_lengths

__all__ = [
    "BACKBONES", "BackboneSpec", "FrozenBackbone", "augmented_views", "backbone_spec",
    "cache_backbone_features", "load_backbone", "measure_features_per_second", "view_params",
    "ImageEncoder", "image_encoder_from_config",
    "distinctive_loss", "make_classifier", "matching_loss",
    "attribute_precision_at_k", "attribute_precision_chance", "average_precision", "class_map",
    "class_map_one_query_per_class", "cosine_similarity", "expected_average_precision", "first_query_per_class",
    "recall_at_k",
    "MIN_FRAMES", "SpeechEncoder", "conv_output_lengths",
]
