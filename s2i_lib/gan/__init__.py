"""Generation stage of S2IGAN: densely-stacked generator, discriminators, relation supervisor and
their training (docs/paper_notes.md §6 to §9). The pipeline's ``gan`` step, which trains them on the
SEN's embeddings, is ``s2i_lib.steps.gan.train_gan_step``.

``s2i_lib.gan.distributed`` (``init_distributed`` under torchrun; its command line is
``s2i_lib.torchrun_gan``) is imported on demand."""
from .blocks import GLU, ResBlock, count_parameters, init_weights
from .conditioning import ConditioningAugmentation, kl_loss
from .discriminator import Discriminator, discriminators_from_config
from .extensions import Extensions, contrastive_loss
from .generator import Generator
from .losses import bce, discriminator_loss, generator_adversarial_loss
from .relation_supervisor import (FrozenFeatureExtractor, RelationSupervisor, relation_generator_loss,
                                  relation_supervisor_loss)
from .trainer import (GENERATOR_FILE, DistContext, GanBatch, GanBatchSampler, GanDivergenceError, GanTrainer,
                      GanTrainingSet, keep_freed_memory_in_process, load_generator,
                      synthetic_training_set, tiny_feature_extractor)

__all__ = [
    "GLU", "ResBlock", "count_parameters", "init_weights", "ConditioningAugmentation", "kl_loss",
    "Discriminator", "discriminators_from_config", "DistContext", "Generator",
    "bce", "discriminator_loss", "generator_adversarial_loss", "Extensions", "contrastive_loss",
    "FrozenFeatureExtractor", "RelationSupervisor", "relation_generator_loss", "relation_supervisor_loss",
    "GanBatch", "GanBatchSampler", "GanDivergenceError", "GanTrainer", "GanTrainingSet",
    "keep_freed_memory_in_process", "load_generator", "GENERATOR_FILE",
    "synthetic_training_set", "tiny_feature_extractor",
]
