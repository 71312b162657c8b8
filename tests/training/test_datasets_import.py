"""Importers (YOLO, COCO, CVAT, Label Studio) map real labelled photos onto the canonical classes.

Bad rows are reported with their file and line (or JSON place) and skipped; nothing vanishes silently.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from training_samples import MAPPING, source_names

from training.datasets.coco import read_coco
from training.datasets.cvat import read_cvat, read_cvat_video
from training.datasets.labelstudio import image_file_name, read_labelstudio
from training.datasets.model import ClassMapping
from training.datasets.sources import locate, read_source, unpack
from training.datasets.yolo import read_yolo


def mapping() -> ClassMapping:
    return ClassMapping.load(MAPPING)


def expected_boxes(label_file: Path) -> list[tuple[str, float, float, float, float]]:
    """Canonical boxes of a label file, worked out independently of the importer."""
    names, table = source_names(), mapping()
    out = []
    for row in label_file.read_text().splitlines():
        cls, *coords = row.split()
        target = table.mapping[names[int(cls)]]
        if target is not None:
            out.append((target, *(float(v) for v in coords)))
    return sorted(out)


def as_tuples(boxes) -> list[tuple[str, float, float, float, float]]:
    return sorted((b.label, b.cx, b.cy, b.w, b.h) for b in boxes)


def assert_same_boxes(a, b, tol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(sorted(a), sorted(b), strict=True):
        assert x[0] == y[0]
        assert all(abs(p - q) <= tol for p, q in zip(x[1:], y[1:], strict=True)), (x, y)


def test_yolo_import_maps_classes_and_keeps_splits(yolo_sample: Path) -> None:
    dataset = read_yolo(yolo_sample, mapping())
    assert len(dataset.images) == 8 and not dataset.problems
    assert sorted({img.split for img in dataset.images}) == ["train", "valid"]
    for img in dataset.images:
        label = img.path.parent.parent / "labels" / f"{img.path.stem}.txt"
        assert_same_boxes(as_tuples(img.boxes), expected_boxes(label))
    labels = {b.label for img in dataset.images for b in img.boxes}
    assert labels <= {"person", "helmet", "head", "vest", "no_vest"} and "person" in labels


def test_yolo_bad_rows_are_reported_with_file_and_line_and_only_they_are_skipped(yolo_sample: Path) -> None:
    label = sorted((yolo_sample.parent / "train" / "labels").glob("*.txt"))[0]
    good_rows = len(label.read_text().splitlines())
    bad = [
        "5 0.5 0.5 0.1",
        "5 x 0.5 0.1 0.1",
        "5 1.5 0.5 0.1 0.1",
        "42 0.5 0.5 0.1 0.1",
        "5 0.1 0.1 0.1 0.1 0.2 0.2",
    ]
    label.write_text(label.read_text().rstrip("\n") + "\n" + "\n".join(bad) + "\n")
    before = expected_boxes_from_rows(label, good_rows)
    dataset = read_yolo(yolo_sample, mapping())
    problems = {p.where: p.message for p in dataset.problems}
    for offset, needle in enumerate(["expected", "not numbers", "out of range", "class id 42", "polygon"]):
        where = f"{label}:{good_rows + 1 + offset}"
        assert where in problems and needle in problems[where], (where, problems)
    img = next(i for i in dataset.images if i.path.stem == label.stem)
    assert_same_boxes(as_tuples(img.boxes), before)


def expected_boxes_from_rows(label: Path, rows: int) -> list:
    tmp = label.with_suffix(".first")
    tmp.write_text("\n".join(label.read_text().splitlines()[:rows]) + "\n")
    try:
        return expected_boxes(tmp)
    finally:
        tmp.unlink()


def test_classes_missing_from_the_mapping_are_reported_not_dropped(yolo_sample: Path) -> None:
    partial = ClassMapping({k: v for k, v in mapping().mapping.items() if k != "Person"})
    dataset = read_yolo(yolo_sample, partial)
    unmapped = [p for p in dataset.problems if "'Person' is not in the mapping" in p.message]
    person_rows = sum(
        1
        for label in yolo_sample.parent.glob("*/labels/*.txt")
        for row in label.read_text().splitlines()
        if source_names()[int(row.split()[0])] == "Person"
    )
    assert person_rows > 0 and len(unmapped) == person_rows


def test_a_label_file_without_its_image_is_reported(yolo_sample: Path) -> None:
    orphan = yolo_sample.parent / "train" / "labels" / "gone.txt"
    orphan.write_text("5 0.5 0.5 0.2 0.2\n")
    dataset = read_yolo(yolo_sample, mapping())
    assert any(p.where == str(orphan) and "no image" in p.message for p in dataset.problems)


def test_mapping_onto_an_unknown_canonical_class_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("Hardhat: hardhat\n")
    with pytest.raises(ValueError, match="'hardhat', which is not one of person"):
        ClassMapping.load(bad)


def coco_from_yolo(yolo_sample: Path, dest: Path) -> tuple[Path, dict[str, list]]:
    """Write the sample as COCO (CVAT's layout: annotations/instances_default.json + images/)."""
    names = source_names()
    (dest / "images").mkdir(parents=True)
    (dest / "annotations").mkdir()
    coco: dict = {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(names)]
    expected = {}
    for image_id, image in enumerate(sorted(yolo_sample.parent.glob("train/images/*.jpg")), 1):
        shutil.copyfile(image, dest / "images" / image.name)
        h, w = cv2.imread(str(image)).shape[:2]
        coco["images"].append({"id": image_id, "file_name": image.name, "width": w, "height": h})
        label = image.parent.parent / "labels" / f"{image.stem}.txt"
        for row in label.read_text().splitlines():
            cls, cx, cy, bw, bh = row.split()
            x, y = (float(cx) - float(bw) / 2) * w, (float(cy) - float(bh) / 2) * h
            bbox = [x, y, float(bw) * w, float(bh) * h]
            ann = {"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": int(cls) + 1}
            coco["annotations"].append(ann | {"bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
        expected[image.name] = expected_boxes(label)
    path = dest / "annotations" / "instances_default.json"
    path.write_text(json.dumps(coco))
    return path, expected


def test_coco_import_gives_the_same_boxes_as_the_yolo_labels(yolo_sample: Path, tmp_path: Path) -> None:
    path, expected = coco_from_yolo(yolo_sample, tmp_path / "coco")
    dataset = read_coco(path, mapping=mapping())
    assert not dataset.problems
    assert sorted(img.path.name for img in dataset.images) == sorted(expected)
    for img in dataset.images:
        assert_same_boxes(as_tuples(img.boxes), expected[img.path.name])


def test_coco_bad_annotations_are_reported_by_place_and_id(yolo_sample: Path, tmp_path: Path) -> None:
    path, _ = coco_from_yolo(yolo_sample, tmp_path / "coco")
    coco = json.loads(path.read_text())
    n = len(coco["annotations"])
    template = {"image_id": 1, "category_id": 6, "iscrowd": 0}
    coco["annotations"] += [
        template | {"id": 9001, "bbox": [1, 2, 3]},
        template | {"id": 9002, "image_id": 999, "bbox": [1, 2, 3, 4]},
        template | {"id": 9003, "bbox": [-500, 2, 30, 40]},
        template | {"id": 9004, "iscrowd": 1, "bbox": [1, 2, 3, 4]},
        template | {"id": 9005, "category_id": 77, "bbox": [1, 2, 3, 4]},
    ]
    coco["images"].append({"id": 50, "file_name": "missing.jpg", "width": 10, "height": 10})
    path.write_text(json.dumps(coco))
    dataset = read_coco(path, mapping=mapping())
    messages = {p.where: p.message for p in dataset.problems}
    for i, needle in enumerate(["bbox must be", "not in `images`", "out of range", "crowd", "unknown"]):
        assert needle in messages[f"{path}: annotations[{n + i}] (id {9001 + i})"]
    assert "not found" in messages[f"{path}: image missing.jpg"]
    assert len(dataset.images) == len(coco["images"]) - 1


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>site-a batch 3</name>
      <size>2</size>
      <mode>annotation</mode>
      <labels>
        <label><name>Person</name><color>#fa3253</color><type>rectangle</type><attributes></attributes></label>
        <label><name>Hardhat</name><color>#33ddff</color><type>rectangle</type><attributes></attributes></label>
      </labels>
    </task>
    <dumped>2024-05-02 09:12:44.123456+00:00</dumped>
  </meta>
  <image id="0" name="{name0}" width="{w0}" height="{h0}">
    <box label="Person" source="manual" occluded="0" xtl="10.00" ytl="20.00" xbr="110.00" ybr="220.00">
    </box>
    <box label="Hardhat" source="manual" occluded="1" xtl="40.5" ytl="20.0" xbr="80.5" ybr="50.0" z_order="0">
      <attribute name="colour">white</attribute>
    </box>
    <polygon label="Person" source="manual" occluded="0" points="1,1;5,5;1,9" z_order="0">
    </polygon>
    <box label="Person" source="manual" occluded="0" xtl="90.0" ytl="20.0" xbr="30.0" ybr="50.0" z_order="0">
    </box>
    <box label="Crane" source="manual" occluded="0" xtl="1.0" ytl="1.0" xbr="5.0" ybr="5.0" z_order="0">
    </box>
    <box label="Person" occluded="0" xtl="100" ytl="100" xbr="140" ybr="120" rotation="90.0" z_order="0">
    </box>
  </image>
  <image id="1" name="{name1}" width="{w1}" height="{h1}" subset="Validation">
  </image>
  <image id="2" name="not-uploaded.jpg" width="640" height="640">
  </image>
</annotations>
"""


def cvat_export(yolo_sample: Path, dest: Path) -> tuple[Path, list[Path]]:
    images = sorted(yolo_sample.parent.glob("train/images/*.jpg"))[:2]
    sizes = [cv2.imread(str(p)).shape[:2] for p in images]
    (dest / "images").mkdir(parents=True)
    for p in images:
        shutil.copyfile(p, dest / "images" / p.name)
    xml = CVAT_XML.format(
        name0=images[0].name,
        w0=sizes[0][1],
        h0=sizes[0][0],
        name1=images[1].name,
        w1=sizes[1][1],
        h1=sizes[1][0],
    )
    (dest / "annotations.xml").write_text(xml)
    return dest / "annotations.xml", images


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_cvat_import_reads_boxes_and_reports_bad_shapes_by_line(yolo_sample: Path, tmp_path: Path) -> None:
    xml, images = cvat_export(yolo_sample, tmp_path / "cvat")
    text = xml.read_text()
    dataset = read_cvat(xml, mapping=mapping())
    first = next(img for img in dataset.images if img.path.name == images[0].name)
    h, w = cv2.imread(str(images[0])).shape[:2]
    person = next(b for b in first.boxes if b.label == "person")
    assert person.cx == pytest.approx(60 / w) and person.h == pytest.approx(200 / h)
    assert [b.label for b in first.boxes].count("helmet") == 1
    rotated = [b for b in first.boxes if b.label == "person" and b.w * w == pytest.approx(20, abs=0.01)]
    assert len(rotated) == 1 and rotated[0].h * h == pytest.approx(40, abs=0.01)  # 40x20 turned upright
    problems = {p.where: p.message for p in dataset.problems}
    assert "polygon shapes are not imported" in problems[f"{xml}:{line_of(text, '<polygon')}"]
    reversed_box = line_of(text, 'xbr="30.0"')
    assert "no area" in problems[f"{xml}:{reversed_box}"]
    assert "'Crane' is not in the mapping" in problems[f"{xml}:{line_of(text, 'Crane')}"]
    assert "rotated 90" in problems[f"{xml}:{line_of(text, 'rotation=')}"]
    assert "not found" in problems[f"{xml}:{line_of(text, 'not-uploaded')}"]
    second = next(img for img in dataset.images if img.path.name == images[1].name)
    assert second.boxes == [] and second.split == "valid"


def test_cvat_zip_is_found_and_read_through_the_source_reader(yolo_sample: Path, tmp_path: Path) -> None:
    xml, _ = cvat_export(yolo_sample, tmp_path / "cvat")
    archive = tmp_path / "task_7-cvat for images 1.1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in xml.parent.rglob("*"):
            zf.write(path, path.relative_to(xml.parent))
    folder = unpack(archive, tmp_path / "unpacked")
    assert locate(folder) == ("cvat", folder / "annotations.xml")
    assert len(read_source(folder, mapping=mapping()).images) == 2


def test_a_zip_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        unpack(archive, tmp_path / "x")
    assert not (tmp_path / "escape.txt").exists()


def labelstudio_export(yolo_sample: Path, dest: Path) -> tuple[Path, list[Path]]:
    images = sorted(yolo_sample.parent.glob("train/images/*.jpg"))[:3]
    (dest / "images").mkdir(parents=True)
    for p in images:
        shutil.copyfile(p, dest / "images" / p.name)
    w, h = cv2.imread(str(images[0])).shape[1::-1]

    def rect(label: str, x: float, y: float, width: float, height: float, rotation: float = 0) -> dict:
        value = {
            "x": x,
            "y": y,
            "width": width,
            "height": height,
            "rotation": rotation,
            "rectanglelabels": [label],
        }
        return {
            "original_width": w, "original_height": h, "image_rotation": 0, "value": value, "id": "r1",
            "from_name": "label", "to_name": "image", "type": "rectanglelabels", "origin": "manual",
        }  # fmt: skip

    tasks = [
        {
            "id": 101,
            "data": {"image": f"/data/upload/3/1a2b3c4d-{images[0].name}"},
            "annotations": [
                {"id": 1, "was_cancelled": False, "ground_truth": False,
                 "result": [rect("Hardhat", 50, 5, 10, 8)]},
                {"id": 2, "was_cancelled": False, "ground_truth": False,
                 "result": [rect("Person", 10, 20, 30, 60), rect("NO-Hardhat", 15, 20, 5, 5),
                            {"type": "polygonlabels", "value": {"points": [[1, 1], [2, 2], [1, 3]],
                                                                "polygonlabels": ["Person"]}},
                            rect("Person", 90, 20, 30, 60)]},
            ],
            "predictions": [],
        },
        {"id": 102, "data": {"image": f"/data/local-files/?d=site-a%2F{images[1].name}"},
         "annotations": [{"id": 3, "was_cancelled": True, "result": [rect("Person", 1, 1, 5, 5)]}]},
        {"id": 103, "data": {"image": f"/data/upload/3/0f0f0f0f-{images[2].name}"},
         "annotations": [{"id": 4, "was_cancelled": False, "result": []}]},
    ]  # fmt: skip
    path = dest / "project-3-at-2024-05-02.json"
    path.write_text(json.dumps(tasks, indent=1))
    return path, images


def test_labelstudio_json_import_uses_percent_boxes_and_the_latest_annotation(
    yolo_sample: Path, tmp_path: Path
) -> None:
    path, images = labelstudio_export(yolo_sample, tmp_path / "ls")
    dataset = read_labelstudio(path, mapping=mapping())
    by_name = {img.path.name: img for img in dataset.images}
    assert set(by_name) == {images[0].name, images[2].name}  # the cancelled-only task is not a negative
    first = by_name[images[0].name]
    assert_same_boxes(
        as_tuples(first.boxes), [("head", 0.175, 0.225, 0.05, 0.05), ("person", 0.25, 0.5, 0.3, 0.6)]
    )
    assert first.group == images[0].stem.split(".rf.")[0]  # upload prefix stripped, variants grouped
    assert by_name[images[2].name].boxes == []  # submitted with no boxes: a real negative
    messages = [str(p) for p in dataset.problems]
    assert any("task 101" in m and "2 annotations; imported annotation 2" in m for m in messages)
    assert any("task 101 result 2" in m and "polygonlabels" in m for m in messages)
    assert any("task 101 result 3" in m and "out of range" in m for m in messages)
    assert any("task 102" in m and "no completed annotation" in m for m in messages)


def test_labelstudio_json_min_and_yolo_exports(yolo_sample: Path, tmp_path: Path) -> None:
    images = sorted(yolo_sample.parent.glob("train/images/*.jpg"))[:1]
    (tmp_path / "min" / "images").mkdir(parents=True)
    shutil.copyfile(images[0], tmp_path / "min" / "images" / images[0].name)
    box = {"x": 10, "y": 20, "width": 30, "height": 60, "rotation": 0, "rectanglelabels": ["Person"]}
    minimal = [
        {"image": f"/data/upload/1/abcdef12-{images[0].name}", "id": 5, "label": [box], "annotator": 1}
    ]
    (tmp_path / "min" / "min.json").write_text(json.dumps(minimal))
    dataset = read_labelstudio(tmp_path / "min" / "min.json", mapping=mapping())
    assert_same_boxes(as_tuples(dataset.images[0].boxes), [("person", 0.25, 0.5, 0.3, 0.6)])

    ls_yolo = tmp_path / "ls-yolo"
    shutil.copytree(yolo_sample.parent / "train", ls_yolo)
    (ls_yolo / "classes.txt").write_text("\n".join(source_names()) + "\n")
    assert locate(ls_yolo) == ("labelstudio", ls_yolo)
    dataset = read_source(ls_yolo, mapping=mapping())
    assert len(dataset.images) == 6 and not dataset.problems
    for img in dataset.images:
        assert_same_boxes(as_tuples(img.boxes), expected_boxes(ls_yolo / "labels" / f"{img.path.stem}.txt"))


def test_labelstudio_image_references_resolve_to_file_names() -> None:
    assert image_file_name("/data/upload/3/1a2b3c4d-a%20b.jpg") == "1a2b3c4d-a b.jpg"
    assert image_file_name("/data/local-files/?d=site%2Fcam1%2Fx.png") == "x.png"
    assert image_file_name("s3://bucket/site/y.jpg") == "y.jpg"


# ---------------------------------------------------------------- exports written by the tools themselves

TOOL_EXPORTS = Path(__file__).parent / "fixtures" / "tool_exports"
TOOL_SIZES = {"bus.jpg": (810, 1080), "zidane.jpg": (1280, 720)}
#: The pixel boxes make_tool_exports.py put in, mapped by hand onto the canonical classes (Mask is dropped
#: by the mapping, Crane is not in it).
TOOL_TRUTH = {
    "bus.jpg": [("person", 50, 400, 245.5, 905.25), ("helmet", 100, 400, 160, 450)],
    "zidane.jpg": [
        ("person", 120, 195, 730, 715),
        ("head", 300, 200, 420, 330),
        ("vest", 744, 42, 1142, 718),
    ],
}


def tool_truth(name: str, extra: list | None = None) -> list[tuple[str, float, float, float, float]]:
    """Expected canonical boxes of an image, worked out from the pixel boxes put into the tool."""
    w, h = TOOL_SIZES[name]
    rows = TOOL_TRUTH[name] + (extra or [])
    return sorted(
        (label, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        for label, x1, y1, x2, y2 in rows
    )


def blank_image(path: Path, name: str) -> Path:
    """A black JPEG of the size the export records for `name` (the importers never read pixels)."""
    w, h = TOOL_SIZES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
    return path


def image_named(dataset, suffix: str):
    matches = [img for img in dataset.images if img.path.name.endswith(suffix)]
    assert len(matches) == 1, [str(img.path) for img in dataset.images]
    return matches[0]


def messages(dataset) -> list[str]:
    return [str(p) for p in dataset.problems]


def test_cvat_for_images_export_from_datumaro_gives_the_exact_boxes(tmp_path: Path) -> None:
    export = tmp_path / "cvat"
    shutil.copytree(TOOL_EXPORTS / "cvat_images", export)
    blank_image(export / "images" / "site-a" / "bus.jpg", "bus.jpg")
    blank_image(export / "images" / "zidane.jpg", "zidane.jpg")
    xml = export / "default.xml"
    assert locate(export) == ("cvat", xml)  # datumaro names the file after the subset
    dataset = read_source(export, mapping=mapping())
    for name in TOOL_SIZES:
        assert_same_boxes(as_tuples(image_named(dataset, name).boxes), tool_truth(name), tol=1e-9)
    text = xml.read_text()
    problems = {p.where: p.message for p in dataset.problems}
    crane = line_of(text, 'label="Crane"')
    assert "'Crane' is not in the mapping" in problems[f"{xml}:{crane}"]
    assert "polygon shapes are not imported" in problems[f"{xml}:{line_of(text, '<polygon')}"]
    assert len(problems) == 2


def test_cvat_images_export_of_a_video_task_names_frames_without_extension(tmp_path: Path) -> None:
    """CVAT names a video task's frames `frame_000000` in the XML and saves images/frame_000000.PNG."""
    text = (TOOL_EXPORTS / "cvat_images" / "default.xml").read_text()
    text = text.replace('name="site-a/bus.jpg"', 'name="frame_000007"').replace("zidane.jpg", "frame_000008")
    # an `outside` box: the tracked object has left the frame, so it is no label here (and no problem)
    text = text.replace('label="Crane" occluded="0" outside="0"', 'label="Crane" occluded="0" outside="1"')
    (tmp_path / "annotations.xml").write_text(text)
    blank_image(tmp_path / "images" / "frame_000007.PNG", "bus.jpg")
    blank_image(tmp_path / "images" / "frame_000008.PNG", "zidane.jpg")
    dataset = read_source(tmp_path, mapping=mapping())
    assert_same_boxes(as_tuples(image_named(dataset, "frame_000007.PNG").boxes), tool_truth("bus.jpg"))
    assert_same_boxes(as_tuples(image_named(dataset, "frame_000008.PNG").boxes), tool_truth("zidane.jpg"))
    assert [p.message for p in dataset.problems] == ["polygon shapes are not imported (boxes only); skipped"]


def test_cvat_for_video_export_is_refused_by_import_and_read_by_its_own_reader() -> None:
    xml = TOOL_EXPORTS / "cvat_video" / "default.xml"
    with pytest.raises(ValueError, match=r"default\.xml:\d+: this is a 'CVAT for video 1.1'.*extract-frames"):
        read_source(xml, mapping=mapping())
    video = read_cvat_video(xml, mapping())
    w, h = 640, 480

    def at(frame: int) -> list:
        return as_tuples(video.boxes_at(frame))

    person0 = ("person", 150 / w, 200 / h, 100 / w, 200 / h)
    person5 = ("person", 200 / w, 200 / h, 100 / w, 200 / h)  # interpolated halfway between keyframes
    helmet = ("helmet", 30 / w, 25 / h, 40 / w, 30 / h)
    assert_same_boxes(at(0), [person0])
    assert_same_boxes(at(5), [person5])
    assert_same_boxes(at(20), [helmet])  # the person track went outside at 20; the helmet track goes on


def test_cvat_coco_export_finds_images_in_images_default(tmp_path: Path) -> None:
    export = tmp_path / "task_7-coco 1.0"
    shutil.copytree(TOOL_EXPORTS / "cvat_coco", export)
    blank_image(export / "images" / "default" / "site-a" / "bus.jpg", "bus.jpg")
    blank_image(export / "images" / "default" / "zidane.jpg", "zidane.jpg")
    dataset = read_source(export, mapping=mapping())
    # COCO gives every shape a bbox, so the polygon (10,10 50,10 30,60) comes in as its bounding box
    polygon_box = [("person", 10, 10, 50, 60)]
    assert_same_boxes(as_tuples(image_named(dataset, "bus.jpg").boxes), tool_truth("bus.jpg", polygon_box))
    assert_same_boxes(as_tuples(image_named(dataset, "zidane.jpg").boxes), tool_truth("zidane.jpg"))
    assert len(dataset.problems) == 1 and "'Crane' is not in the mapping" in dataset.problems[0].message
    assert {img.split for img in dataset.images} == {None}  # subset "default": left to the splitter


def test_coco_subset_names_become_splits(tmp_path: Path) -> None:
    # CVAT names the file after the subset (instances_val.json); Roboflow names the folder (valid/).
    source = TOOL_EXPORTS / "cvat_coco" / "annotations" / "instances_default.json"
    for json_name, expected in (("annotations/instances_val.json", "valid"), ("train/x.coco.json", "train")):
        target = tmp_path / expected / json_name
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
        blank_image(target.parent / "site-a" / "bus.jpg", "bus.jpg")
        blank_image(target.parent / "zidane.jpg", "zidane.jpg")
        dataset = read_coco(target, mapping=mapping())
        assert len(dataset.images) == 2 and {img.split for img in dataset.images} == {expected}


def labelstudio_uploads(dest: Path) -> Path:
    """Label Studio's media/upload/1 folder: uploaded files carry an 8-hex prefix."""
    blank_image(dest / "1a2b3c4d-bus.jpg", "bus.jpg")
    blank_image(dest / "9f8e7d6c-zidane.jpg", "zidane.jpg")
    blank_image(dest / "0badf00d-zidane.jpg", "zidane.jpg")
    return dest


def assert_labelstudio_project(dataset) -> None:
    assert sorted(img.path.name for img in dataset.images) == ["1a2b3c4d-bus.jpg", "9f8e7d6c-zidane.jpg"]
    for name in TOOL_SIZES:
        assert_same_boxes(as_tuples(image_named(dataset, name).boxes), tool_truth(name))
    found = messages(dataset)
    assert any("task 1 result" in m and "'Crane' is not in the mapping" in m for m in found)
    assert any("task 1 result" in m and "polygonlabels results are not imported" in m for m in found)
    assert any("task 3: no completed annotation (unlabelled, not negative)" in m for m in found)


def test_labelstudio_json_export_gives_the_exact_boxes(tmp_path: Path) -> None:
    uploads = labelstudio_uploads(tmp_path / "upload")
    dataset = read_source(
        TOOL_EXPORTS / "labelstudio" / "project-1.json", mapping=mapping(), images_dir=uploads
    )
    assert_labelstudio_project(dataset)
    assert any("task 2: 2 annotations; imported annotation 102 only" in m for m in messages(dataset))
    assert len(dataset.problems) == 4


def test_labelstudio_json_min_keeps_one_record_per_task_and_reports_the_rest(tmp_path: Path) -> None:
    uploads = labelstudio_uploads(tmp_path / "upload")
    json_min = TOOL_EXPORTS / "labelstudio" / "json_min" / "result.json"
    dataset = read_source(json_min, mapping=mapping(), images_dir=uploads)
    assert_labelstudio_project(dataset)  # the polygon sits in a second list (labelpolygons): reported too
    assert any("task 2: another annotation (id 900) of this task; skipped" in m for m in messages(dataset))
    assert len(dataset.problems) == 4


def test_labelstudio_local_files_references_keep_their_folders(tmp_path: Path) -> None:
    tasks = json.loads((TOOL_EXPORTS / "labelstudio" / "project-1.json").read_text())
    tasks[0]["data"]["image"] = "/data/local-files/?d=site-a%2Fbus.jpg"
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    storage = tmp_path / "storage"
    blank_image(storage / "site-b" / "bus.jpg", "bus.jpg")  # same name, other folder: must not be taken
    wanted = blank_image(storage / "site-a" / "bus.jpg", "bus.jpg")
    dataset = read_source(tmp_path / "tasks.json", mapping=mapping(), images_dir=storage)
    assert [img.path for img in dataset.images] == [wanted]
    assert_same_boxes(as_tuples(dataset.images[0].boxes), tool_truth("bus.jpg"))


def test_labelstudio_yolo_export_without_images_takes_them_from_the_images_option(tmp_path: Path) -> None:
    export = tmp_path / "project-1-yolo"
    shutil.copytree(TOOL_EXPORTS / "labelstudio" / "yolo", export)
    # Label Studio writes an empty label file for the unlabelled task (kept out of the fixture folder)
    (export / "labels" / "0badf00d-zidane.txt").touch()
    (export / "images").mkdir()  # the export's images/ is empty unless "YOLO with Images" was chosen
    with pytest.raises(ValueError, match="--images"):
        read_source(export, mapping=mapping())
    dataset = read_source(export, mapping=mapping(), images_dir=labelstudio_uploads(tmp_path / "upload"))
    assert_same_boxes(as_tuples(image_named(dataset, "bus.jpg").boxes), tool_truth("bus.jpg"))
    found = messages(dataset)
    assert any("1a2b3c4d-bus.txt:" in m and "'Crane' is not in the mapping" in m for m in found)
    assert any("1a2b3c4d-bus.txt:" in m and "polygon rows are not supported" in m for m in found)
    # Label Studio's YOLO writer keeps the *oldest* annotation of task 2 (one Hardhat box): the file says so
    assert [b.label for b in image_named(dataset, "9f8e7d6c-zidane.jpg").boxes] == ["helmet"]


def test_labelstudio_coco_export_lists_an_image_once_per_annotation(tmp_path: Path) -> None:
    uploads = labelstudio_uploads(tmp_path / "upload")
    coco = TOOL_EXPORTS / "labelstudio" / "coco" / "result.json"
    dataset = read_source(coco, mapping=mapping(), images_dir=uploads)
    zidane = image_named(dataset, "9f8e7d6c-zidane.jpg")  # once, with the newest annotation's boxes
    assert_same_boxes(as_tuples(zidane.boxes), tool_truth("zidane.jpg"))
    problems = {p.where: p.message for p in dataset.problems}
    assert (
        "1 annotation(s) skipped"
        in problems[
            f"{coco}: images[2]: /data/upload/1/9f8e7d6c-zidane.jpg is listed again (first as images[1])"
        ]
    )
    assert "width/height missing" in problems[f"{coco}: images[3]"]  # the unlabelled task


def whole_head_mapping(tmp_path: Path) -> ClassMapping:
    """The construction-site-safety mapping, but its bare heads boxed whole (hair to chin) by the tool."""
    text = MAPPING.read_text().replace("NO-Hardhat: head", "NO-Hardhat: {class: head, keep_top: 0.5}")
    path = tmp_path / "whole-heads.yaml"
    path.write_text(text)
    return ClassMapping.load(path)


def test_keep_top_turns_whole_head_boxes_into_the_top_of_the_head_in_every_format(
    yolo_sample: Path, tmp_path: Path
) -> None:
    # zidane.jpg's bare head is 300,200-420,330 in the exports: its top half is 300,200-420,265.
    top_half = tool_truth("zidane.jpg", [("head", 300, 200, 420, 265)])
    top_half.remove(tool_truth("zidane.jpg")[[b[0] for b in tool_truth("zidane.jpg")].index("head")])
    cvat = tmp_path / "cvat"
    shutil.copytree(TOOL_EXPORTS / "cvat_images", cvat)
    blank_image(cvat / "images" / "site-a" / "bus.jpg", "bus.jpg")
    blank_image(cvat / "images" / "zidane.jpg", "zidane.jpg")
    coco = tmp_path / "coco"
    shutil.copytree(TOOL_EXPORTS / "cvat_coco", coco)
    blank_image(coco / "images" / "default" / "site-a" / "bus.jpg", "bus.jpg")
    blank_image(coco / "images" / "default" / "zidane.jpg", "zidane.jpg")
    uploads = labelstudio_uploads(tmp_path / "uploads")
    table = whole_head_mapping(tmp_path)
    for dataset in (
        read_source(cvat, mapping=table),
        read_source(coco, mapping=table),
        read_labelstudio(TOOL_EXPORTS / "labelstudio" / "project-1.json", uploads, table),
    ):
        # the head keeps its top half; the person and the vest on the same image keep their boxes
        assert_same_boxes(as_tuples(image_named(dataset, "zidane.jpg").boxes), top_half)
    plain, halved = read_yolo(yolo_sample, mapping()), read_yolo(yolo_sample, table)
    heads = 0
    for before, after in zip(plain.images, halved.images, strict=True):
        for a, b in zip(before.boxes, after.boxes, strict=True):
            if a.label == "head":
                heads += 1
                assert (b.cx, b.w, b.h) == (a.cx, a.w, a.h / 2)
                assert abs((b.cy - b.h / 2) - (a.cy - a.h / 2)) < 1e-9  # same top edge
            else:
                assert b == a
    assert heads > 0


def test_a_malformed_keep_top_entry_is_refused_with_its_class(tmp_path: Path) -> None:
    for entry, message in (
        ("{class: head, keep_top: 0}", "keep_top must be in \\(0, 1\\]"),
        ("{class: head, keep_top: half}", "keep_top must be a number"),
        ("{klass: head}", "expected \\{class: NAME, keep_top: SHARE\\}"),
        ("{class: hat, keep_top: 0.5}", "'hat', which is not one of"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"NO-Hardhat: {entry}\n")
        with pytest.raises(ValueError, match=f"bad.yaml.*NO-Hardhat.*{message}"):
            ClassMapping.load(bad)
