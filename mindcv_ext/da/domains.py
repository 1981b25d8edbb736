"""Domain-adaptation benchmarks as ImageFolder domains: ``root/<domain>/<class>/<image>``.

Category lists: Office-31 (Saenko et al., ECCV 2010; the dataset's folder names), Office-Home
(Venkateswara et al., CVPR 2017; the list in CvNoob/SFDA-DE ``experiments/dataset/Office-Home/category.txt``),
VisDA-2017 classification (Peng et al., 2017; the dataset's folder names). Office-Home's
"Real World" domain is expected as ``Real_World``.
"""
import os
from typing import Dict, List, Optional, Sequence

from ..data.registry import DatasetError

OFFICE31_CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray",
    "mobile_phone", "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector",
    "punchers", "ring_binder", "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can")

OFFICE_HOME_CLASSES = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator", "Calendar",
    "Candles", "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp", "Drill", "Eraser",
    "Exit_Sign", "Fan", "File_Cabinet", "Flipflops", "Flowers", "Folder", "Fork", "Glasses", "Hammer",
    "Helmet", "Kettle", "Keyboard", "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse",
    "Mug", "Notebook", "Oven", "Pan", "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin",
    "Radio", "Refrigerator", "Ruler", "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda",
    "Speaker", "Spoon", "TV", "Table", "Telephone", "ToothBrush", "Toys", "Trash_Can", "Webcam")

VISDA2017_CLASSES = ("aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person", "plant",
                     "skateboard", "train", "truck")

BENCHMARKS: Dict[str, dict] = {
    "office31": {"classes": OFFICE31_CLASSES, "domains": ("amazon", "dslr", "webcam")},
    "office_home": {"classes": OFFICE_HOME_CLASSES, "domains": ("Art", "Clipart", "Product", "Real_World")},
    "visda2017": {"classes": VISDA2017_CLASSES, "domains": ("train", "validation")},
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class DomainFolderError(DatasetError):
    """A domain folder that is missing, empty or lacks class folders."""


def _has_image(folder: str) -> bool:
    for _, _, files in os.walk(folder):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return True
    return False


def check_domain_folder(root: str, domain: str, classes: Optional[Sequence[str]] = None) -> List[str]:
    """Check ``root/<domain>/<class>/`` and return the class folder names found (sorted).

    With ``classes`` given, every listed class must have a folder with at least one image.
    """
    path = os.path.join(root, domain)
    if not os.path.isdir(path):
        raise DomainFolderError(f"domain folder '{path}' does not exist (expected root/<domain>/<class>/<image>)")
    found = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    with_images = [d for d in found if _has_image(os.path.join(path, d))]
    if not with_images:
        raise DomainFolderError(f"domain folder '{path}' is empty: no class sub-folder holds an image")
    if classes is not None:
        missing = [c for c in classes if c not in with_images]
        if missing:
            raise DomainFolderError(f"domain folder '{path}' lacks {len(missing)} of {len(classes)} class folders "
                                    f"with images: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    return with_images


def check_benchmark_domain(root: str, benchmark: str, domain: str) -> List[str]:
    """``check_domain_folder`` with a known benchmark's domain names and category list."""
    if benchmark not in BENCHMARKS:
        raise DomainFolderError(f"unknown benchmark '{benchmark}' (one of {', '.join(BENCHMARKS)})")
    spec = BENCHMARKS[benchmark]
    if domain not in spec["domains"]:
        raise DomainFolderError(f"'{domain}' is not a {benchmark} domain (one of {', '.join(spec['domains'])})")
    return check_domain_folder(root, domain, spec["classes"])
