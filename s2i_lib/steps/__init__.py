"""The steps layer: the work function of each pipeline step, ``work(cfg, out_dir, inputs) -> figures``
(``inputs``: the folder of every earlier step), which ``s2i_lib.pipeline.ensure`` runs in order.

- ``data``: the dataset, then the evaluation's instruments of it;
- ``speech``: the spoken captions and their log-mel features;
- ``sen``: the speech embedding network, its embeddings and retrieval figures, the listening tests;
- ``gan``: the generator, trained on the SEN's embeddings;
- ``eval``: the test images generated and measured; ``ablations``: the ablated models, for ``eval``.

They sit above the packages that do the work (``data``, ``speech``, ``sen``, ``gan``,
``evaluation``) and below the reports, the demo and the CLI (``.importlinter``): nothing under them
imports a step, and a step calls no other step (the ablations retrain the gan step: the one
exception, inside ``eval``). Nothing is imported here: every step imports torch.
"""
