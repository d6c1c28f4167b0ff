"""Turn the official CUB-200-2011 download and its captions into the project's dataset layout."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing s2i_lib

from s2i_lib.data.real_datasets import DatasetPreparationError, add_output_options, prepare_cub  # noqa: E402

DOWNLOADS = """\
what to download (by hand; this script never uses the network):
  --cub       CUB_200_2011.tgz, the CUB-200-2011 archive from the Caltech-UCSD Birds-200-2011
              dataset page (about 1.1 GB). The .tgz itself, its extracted CUB_200_2011/ folder,
              or that folder's parent. Needed inside: images.txt, classes.txt,
              image_class_labels.txt, bounding_boxes.txt, images/<class>/<image>.jpg.
  --captions  the 10 captions per image of Reed et al. (CVPR 2016), in either form:
              - cvpr2016_cub (the archive from Reed et al.'s "Learning Deep Representations of
                Fine-grained Visual Descriptions" release, e.g. cvpr2016_cub.tar.gz): text_c10/
                <class>/<image>.txt with trainvalclasses.txt and testclasses.txt beside text_c10;
              - birds.zip, AttnGAN's preprocessed birds metadata (linked from the AttnGAN README):
                birds/text.zip (or birds/text/), birds/train/filenames.pickle,
                birds/test/filenames.pickle. Its pickles are read without running any code.
              An archive (.tgz/.tar.gz/.zip) or the extracted folder.

output: the layout of s2i_lib.data.layout (images/, text/, {train,test}/filenames.json, ...),
with the StackGAN bounding-box crop, the standard 150/50 class split (8855 / 2933 images), and
images resized so the shorter side is --size (304 = the paper's Resize(304)).

example:
  python data_scripts/prepare_cub.py --cub ~/Downloads/CUB_200_2011.tgz \\
      --captions ~/Downloads/birds.zip --out data/cub
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=DOWNLOADS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cub", required=True, help="CUB_200_2011.tgz or its extracted folder")
    parser.add_argument("--captions", required=True,
                        help="Reed's cvpr2016_cub (text_c10) or AttnGAN's birds.zip, archive or folder")
    parser.add_argument("--out", required=True, help="dataset folder to write (e.g. data/cub)")
    add_output_options(parser, keep="the crop's size")
    args = parser.parse_args(argv)
    try:
        prepare_cub(args.cub, args.captions, args.out, size=args.size, image_format=args.format,
                    overwrite=args.overwrite, workers=args.workers)
    except DatasetPreparationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
