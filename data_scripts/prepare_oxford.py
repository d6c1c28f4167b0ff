"""Turn the official Oxford-102 flowers download and its captions into the project's dataset layout."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing s2i_lib

from s2i_lib.data.real_datasets import DatasetPreparationError, add_output_options, prepare_oxford  # noqa: E402

DOWNLOADS = """\
what to download (by hand; this script never uses the network):
  --images    102flowers.tgz, the images of the Oxford 102 Category Flower Dataset (VGG, Nilsback
              and Zisserman; about 330 MB): the .tgz itself or its extracted jpg/ folder
              (image_00001.jpg ... image_08189.jpg).
  --labels    imagelabels.mat from the same dataset page (variable 'labels', classes 1..102).
  --captions  cvpr2016_flowers, the flower captions of Reed et al. (CVPR 2016, "Learning Deep
              Representations of Fine-grained Visual Descriptions", e.g. cvpr2016_flowers.tar.gz):
              text_c10/class_XXXXX/image_XXXXX.txt (10 captions each) with trainvalclasses.txt
              and testclasses.txt beside text_c10. The archive or the extracted folder.

output: the layout of s2i_lib.data.layout with keys class_XXXXX/image_XXXXX, no crop, Reed's
82/20 class split (7034 / 1155 images), images resized so the shorter side is --size.

example:
  python data_scripts/prepare_oxford.py --images ~/Downloads/102flowers.tgz \\
      --labels ~/Downloads/imagelabels.mat --captions ~/Downloads/cvpr2016_flowers.tar.gz --out data/oxford
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=DOWNLOADS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="102flowers.tgz or its jpg/ folder")
    parser.add_argument("--labels", required=True, help="imagelabels.mat")
    parser.add_argument("--captions", required=True, help="Reed's cvpr2016_flowers (text_c10), archive or folder")
    parser.add_argument("--out", required=True, help="dataset folder to write (e.g. data/oxford)")
    add_output_options(parser, keep="the original size")
    args = parser.parse_args(argv)
    try:
        prepare_oxford(args.images, args.labels, args.captions, args.out, size=args.size,
                       image_format=args.format, overwrite=args.overwrite, workers=args.workers)
    except DatasetPreparationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
