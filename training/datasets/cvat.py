"""CVAT XML ("CVAT for images 1.1" and "CVAT for video 1.1"): import onto canonical classes; write batches.

An export is either the zip CVAT downloads (annotations.xml plus images/), the unpacked folder, or the
annotations.xml alone with the images folder given. Bad shapes are reported with file and line.
"""

from __future__ import annotations

import glob
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from edge.labels import CLASS_NAMES
from training.datasets.model import (
    Box,
    ClassMapping,
    Dataset,
    LabelledImage,
    Problem,
    source_group,
    split_of_subset,
)
from training.datasets.pixels import BadBox, box_from_xyxy, rotated_bounds
from training.datasets.yolo import IMAGE_SUFFIXES

_NON_BOX_SHAPES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag")


@dataclass
class XmlDocument:
    """A parsed XML file that remembers the line each element started on."""

    path: Path
    root: ET.Element
    lines: dict[int, int] = field(default_factory=dict)

    def where(self, element: ET.Element) -> str:
        """Return `file:line` of an element."""
        return f"{self.path}:{self.lines.get(id(element), 0)}"


def parse_xml(path: Path) -> XmlDocument:
    """Parse an XML file keeping element line numbers (ElementTree alone drops them)."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    lines: dict[int, int] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(Path(path).read_bytes(), True)
    except expat.ExpatError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid XML ({expat.errors.messages[exc.code]})") from None
    return XmlDocument(Path(path), builder.close(), lines)


def _float_attrs(element: ET.Element, *names: str) -> list[float]:
    try:
        return [float(element.attrib[name]) for name in names]
    except KeyError as exc:
        raise BadBox(f"attribute {exc.args[0]} is missing") from None
    except ValueError:
        raise BadBox(f"non-numeric coordinates {[element.get(n) for n in names]}") from None


def shape_box(
    doc: XmlDocument,
    element: ET.Element,
    mapping: ClassMapping,
    width: float,
    height: float,
    dataset: Dataset,
) -> Box | None:
    """Convert one <box> element, reporting (and returning None for) anything that cannot be imported."""
    where = doc.where(element)
    source = element.get("label", "")
    known, label = mapping.map(source)
    if not known:
        dataset.problems.append(Problem(where, f"class {source!r} is not in the mapping; shape skipped"))
        return None
    if label is None:
        return None
    try:
        x1, y1, x2, y2 = _float_attrs(element, "xtl", "ytl", "xbr", "ybr")
        rotation = float(element.get("rotation", "0") or 0)
        if rotation % 360:
            x1, y1, x2, y2 = rotated_bounds(x1, y1, x2, y2, rotation, ((x1 + x2) / 2, (y1 + y2) / 2))
            dataset.problems.append(
                Problem(where, f"box rotated {rotation:g} degrees; its upright bounds are used")
            )
        return mapping.reshape(source, box_from_xyxy(label, x1, y1, x2, y2, width, height))
    except (BadBox, ValueError) as exc:
        dataset.problems.append(Problem(where, f"{exc}; shape skipped"))
        return None


def _find_image(name: str, subset: str | None, base: Path, images_dir: Path | None) -> Path | None:
    roots = [images_dir] if images_dir is not None else [base / "images", base]
    for root in roots:
        candidates = [root / name, root / Path(name).name]
        if subset:
            candidates.insert(0, root / subset / name)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
            # Frames of a video task are named `frame_000012` with no extension; CVAT saves them as
            # images/frame_000012.PNG (or .jpg), so try the name with each image suffix.
            if candidate.suffix.lower() not in IMAGE_SUFFIXES and candidate.parent.is_dir():
                for sibling in sorted(candidate.parent.glob(f"{glob.escape(candidate.name)}.*")):
                    if sibling.suffix.lower() in IMAGE_SUFFIXES and sibling.stem == candidate.name:
                        return sibling
    return None


def annotations_file(source: Path) -> Path:
    """Return the annotations.xml of an unpacked export folder, or the file itself."""
    source = Path(source)
    if source.is_dir():
        candidate = source / "annotations.xml"
        if not candidate.is_file():
            raise ValueError(f"{source}: no annotations.xml in this folder (is it a CVAT XML export?)")
        return candidate
    return source


def read_cvat(source: Path, images_dir: Path | None = None, mapping: ClassMapping | None = None) -> Dataset:
    """Import a "CVAT for images 1.1" export: boxes per <image>, other shapes reported and skipped."""
    doc = parse_xml(annotations_file(source))
    if doc.root.tag != "annotations":
        raise ValueError(f"{doc.path}: root element is <{doc.root.tag}>, expected CVAT <annotations>")
    mapping = mapping or ClassMapping.identity()
    dataset = Dataset()
    track = doc.root.find("track")
    if track is not None and doc.root.find("image") is None:
        # A whole "CVAT for video 1.1" file: fail with the way forward instead of importing nothing.
        raise ValueError(
            f"{doc.where(track)}: this is a 'CVAT for video 1.1' export (tracks, no images); "
            "import it with `sitesentry dataset extract-frames`, or export the task as 'CVAT for images 1.1'"
        )
    if track is not None:
        dataset.problems.append(
            Problem(doc.where(track), "tracks belong to a video export; use `extract-frames`")
        )
    for image in doc.root.iter("image"):
        where = doc.where(image)
        name = image.get("name")
        try:
            width, height = float(image.get("width", "")), float(image.get("height", ""))
        except ValueError:
            dataset.problems.append(Problem(where, "<image> needs numeric width and height; image skipped"))
            continue
        if not name:
            dataset.problems.append(Problem(where, "<image> has no name; image skipped"))
            continue
        subset = image.get("subset")
        path = _find_image(name, subset, doc.path.parent, images_dir)
        if path is None:
            dataset.problems.append(Problem(where, f"image file {name} not found; image skipped"))
            continue
        boxes = []
        for shape in image:
            if shape.tag == "box" and shape.get("outside") == "1":
                continue  # an `outside` box marks the object as out of the frame: nothing to label here
            if shape.tag == "box":
                box = shape_box(doc, shape, mapping, width, height, dataset)
                if box is not None:
                    boxes.append(box)
            elif shape.tag in _NON_BOX_SHAPES:
                kind = "image tags" if shape.tag == "tag" else f"{shape.tag} shapes"
                dataset.problems.append(
                    Problem(doc.where(shape), f"{kind} are not imported (boxes only); skipped")
                )
        split = split_of_subset(subset)
        dataset.images.append(LabelledImage(path, boxes, source_group(path), split))
    return dataset


@dataclass
class TrackedBox:
    """One box of a CVAT track at one frame."""

    frame: int
    outside: bool
    keyframe: bool
    box: Box | None  # None when the box could not be imported (already reported)


@dataclass
class VideoAnnotations:
    """Tracks of a "CVAT for video 1.1" export, by absolute frame number of the source video."""

    path: Path
    width: float
    height: float
    start_frame: int
    stop_frame: int | None
    tracks: list[list[TrackedBox]]
    problems: list[Problem]

    def boxes_at(self, frame: int) -> list[Box]:
        """Return every track's box at a frame, interpolating between keyframes when the export skipped it."""
        out = []
        for track in self.tracks:
            before = [t for t in track if t.frame <= frame]
            if not before:
                continue
            prev = before[-1]
            if prev.outside or prev.box is None:
                continue
            after = [t for t in track if t.frame > frame]
            nxt = after[0] if after else None
            if prev.frame == frame or nxt is None or nxt.outside or nxt.box is None:
                out.append(prev.box)
                continue
            share = (frame - prev.frame) / (nxt.frame - prev.frame)
            a, b = prev.box, nxt.box
            out.append(
                Box(
                    a.label,
                    a.cx + (b.cx - a.cx) * share,
                    a.cy + (b.cy - a.cy) * share,
                    a.w + (b.w - a.w) * share,
                    a.h + (b.h - a.h) * share,
                )
            )
        return out


def _meta_int(root: ET.Element, path: str) -> int | None:
    text = root.findtext(path)
    try:
        return int(text) if text is not None and text.strip() else None
    except ValueError:
        return None


def read_cvat_video(xml_path: Path, mapping: ClassMapping | None = None) -> VideoAnnotations:
    """Read the tracks of a "CVAT for video 1.1" annotations.xml (frame numbers are the video's own)."""
    doc = parse_xml(annotations_file(xml_path))
    mapping = mapping or ClassMapping.identity()
    task = "meta/task" if doc.root.find("meta/task") is not None else "meta/job"
    width = _meta_int(doc.root, f"{task}/original_size/width")
    height = _meta_int(doc.root, f"{task}/original_size/height")
    if not width or not height:
        raise ValueError(f"{doc.path}: no <original_size> in <meta>; is this a 'CVAT for video 1.1' export?")
    scratch = Dataset()
    tracks = []
    for track in doc.root.iter("track"):
        boxes = []
        for shape in track:
            if shape.tag != "box":
                if shape.tag in _NON_BOX_SHAPES:
                    scratch.problems.append(
                        Problem(
                            doc.where(shape), f"{shape.tag} tracks are not imported (boxes only); skipped"
                        )
                    )
                continue
            shape.set("label", track.get("label", ""))
            try:
                frame = int(shape.get("frame", ""))
            except ValueError:
                scratch.problems.append(Problem(doc.where(shape), "box has no frame number; skipped"))
                continue
            outside = shape.get("outside") == "1"
            box = None if outside else shape_box(doc, shape, mapping, width, height, scratch)
            boxes.append(TrackedBox(frame, outside, shape.get("keyframe") == "1", box))
        tracks.append(sorted(boxes, key=lambda t: t.frame))
    return VideoAnnotations(
        path=doc.path,
        width=float(width),
        height=float(height),
        start_frame=_meta_int(doc.root, f"{task}/start_frame") or 0,
        stop_frame=_meta_int(doc.root, f"{task}/stop_frame"),
        tracks=tracks,
        problems=scratch.problems,
    )


def write_cvat(
    dataset: Dataset, out_xml: Path, sizes: dict[Path, tuple[int, int]], image_names: dict[Path, str]
) -> Path:
    """Write a "CVAT for images 1.1" annotations.xml (canonical labels) to pre-fill a labelling task.

    `sizes` gives each image's (width, height); `image_names` the name the image has inside the batch.
    """
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    labels = ET.SubElement(ET.SubElement(ET.SubElement(root, "meta"), "task"), "labels")
    for name in CLASS_NAMES:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    for index, img in enumerate(dataset.images):
        width, height = sizes[img.path]
        element = ET.SubElement(
            root,
            "image",
            {"id": str(index), "name": image_names[img.path], "width": str(width), "height": str(height)},
        )
        for box in img.boxes:
            ET.SubElement(
                element,
                "box",
                {
                    "label": box.label,
                    "source": "auto",
                    "occluded": "0",
                    "xtl": f"{(box.cx - box.w / 2) * width:.2f}",
                    "ytl": f"{(box.cy - box.h / 2) * height:.2f}",
                    "xbr": f"{(box.cx + box.w / 2) * width:.2f}",
                    "ybr": f"{(box.cy + box.h / 2) * height:.2f}",
                    "z_order": "0",
                },
            )
    ET.indent(root)
    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out_xml, encoding="utf-8", xml_declaration=True)
    return out_xml
