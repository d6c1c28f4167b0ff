"""Evaluation of generated images: IS, FID / KID, the paper's mAP, R-precision, attribute accuracy.

- ``fid``: FID and KID (torchmetrics) on the TF Inception-v3 pool features of the FID tools.
- ``inception_score``: the StackGAN protocol's IS, with a classifier of the test classes
  (frozen EfficientNet-Lite0 + a trained linear head) whose held-out accuracy is reported.
- ``retrieval_map``: the paper's mAP (real-image queries, generated-image gallery, class relevance).
- ``r_precision``: generated image -> its own spoken caption among 99 of other classes (SEN).
- ``attribute_judge``: toy datasets only; a CNN trained on random attribute combinations says
  which attributes a generated image shows, ``attribute_accuracy`` scores the mentioned ones.
"""
from .attribute_judge import (AttributeJudge, attribute_accuracy, load_attribute_judge,
                              random_attribute_classes, train_attribute_judge)
from .fid import (InceptionFeatures, cached_features, fid_and_kid, fid_from_features, inception_features,
                  kid_from_features)
from .inception_score import (ISClassifier, heldout_split, inception_score, load_is_classifier,
                              train_is_classifier)
from .r_precision import r_precision
from .retrieval_map import paper_queries, retrieval_map

__all__ = ["AttributeJudge", "ISClassifier", "InceptionFeatures", "attribute_accuracy", "cached_features",
           "fid_and_kid", "fid_from_features", "heldout_split", "inception_features", "inception_score",
           "kid_from_features", "load_attribute_judge", "load_is_classifier", "paper_queries",
           "r_precision", "random_attribute_classes", "retrieval_map", "train_attribute_judge",
           "train_is_classifier"]
