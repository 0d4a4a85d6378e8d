"""Image sets: splits, THINGS-layout loader, the built embedded set (skipped if not built)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from interp.data import images as img
from interp.data.rendering import fit_drawing
from interp.data.things import load_things_images


def _fake_set(concepts=("apple", "cow", "robin", "lobster"), sources=tuple(img.SOURCES)) -> img.ImageSet:
    recs = [img.ImageRecord(f"{c}/{s}.png", c, s, Path(f"/x/{c}/{s}.png")) for c in concepts for s in sources]
    return img.ImageSet(Path("/x"), list(concepts), recs)


# ------------------------------------------------------------------- splits
def test_rendering_split_holds_out_whole_families_deterministically():
    s = _fake_set()
    a, b = img.split_images(s, "renderings", seed=0), img.split_images(s, "renderings", seed=0)
    assert a == b
    assert sum(len(v) for v in a.values()) == len(s.images)
    for c in s.concepts:
        fams = {k: {img.source_family(r.source) for r in v if r.concept == c} for k, v in a.items()}
        assert not (fams["train"] & fams["test"]) and not (fams["train"] & fams["val"]) and not (fams["val"] & fams["test"])
        assert len(fams["test"]) == 1 and len(fams["val"]) == 1 and len(fams["train"]) >= 2
    # fluent flat and modern are one drawing: always in the same split
    for v in a.values():
        for r in v:
            if r.source == "fluent-flat":
                assert any(q.concept == r.concept and q.source == "fluent-modern" for q in v)
    others = [img.split_images(s, "renderings", seed=k) for k in range(1, 6)]
    assert any(o != a for o in others)


def test_rendering_split_small_concepts():
    s = _fake_set(("a",), ("google", "twitter"))
    sp = img.split_images(s, "renderings", 0)
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (1, 0, 1)


def test_things_split_sorted_70_5_25():
    recs = [img.ImageRecord(f"dog/{i:02d}.jpg", "dog", "things", Path(f"/x/dog/{i:02d}.jpg")) for i in range(20)]
    s = img.ImageSet(Path("/x"), ["dog"], list(reversed(recs)))
    sp = img.split_images(s, "things", seed=123)
    assert [r.key for r in sp["train"]] == [r.key for r in recs[:14]]
    assert [r.key for r in sp["val"]] == [recs[14].key]
    assert [r.key for r in sp["test"]] == [r.key for r in recs[15:]]
    assert img.split_images(s, "things", seed=7) == sp
    with pytest.raises(ValueError, match="unknown split scheme"):
        img.split_images(s, "random", 0)


# ---------------------------------------------------------- THINGS loader
def test_things_layout_loader(tmp_path: Path):
    root = tmp_path / "things"
    for concept, n in (("hot_dog", 3), ("aardvark", 2)):
        (root / concept).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(root / concept / f"{concept}_{n - i:02d}.jpg")
    (root / "aardvark" / "notes.txt").write_text("not an image")
    (root / "aardvark" / "extra.PNG").write_bytes((root / "aardvark" / "aardvark_01.jpg").read_bytes())
    (root / "empty").mkdir()
    with pytest.warns(UserWarning, match="hold no image"):
        s = load_things_images(root)
    assert s.concepts == ["aardvark", "hot_dog"]
    assert [r.key for r in s.images] == ["aardvark/aardvark_01.jpg", "aardvark/aardvark_02.jpg", "aardvark/extra.PNG",
                                         "hot_dog/hot_dog_01.jpg", "hot_dog/hot_dog_02.jpg", "hot_dog/hot_dog_03.jpg"]
    assert all(r.path.exists() and r.source == "things" for r in s.images)
    sp = img.split_images(s, "things", 0)
    assert sum(map(len, sp.values())) == 6
    assert s.restrict(["hot_dog"]).concepts == ["hot_dog"]


def test_things_loader_errors_name_the_folder(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_things_images(missing)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        load_things_images(tmp_path / "empty")


def test_missing_npm_packages_point_to_setup(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="bash scripts/setup.sh"):
        img.npm_package("openmoji")


def test_fit_crops_and_centres():
    im = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (10, 8, 30, 18))
    out = fit_drawing(im)
    assert out.size == (img.IMAGE_SIZE, img.IMAGE_SIZE) and out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((64, 64)) == (255, 0, 0)


# -------------------------------------------------------- built embedded set
ROOT = img.embedded_image_root()
built = pytest.mark.skipif(not (ROOT / "manifest.json").exists(),
                           reason=f"embedded image set not built at {ROOT}: run `python -m interp.data.build`")
EXCLUDED_CATEGORIES = {"Smileys & Emotion", "People & Body", "Flags", "Symbols", "Component"}


@pytest.fixture(scope="module")
def manifest():
    return json.loads((ROOT / "manifest.json").read_text())


@built
def test_embedded_set_size_and_renderings(manifest):
    s = img.load_image_set(ROOT)
    assert len(s.concepts) >= 400
    by = s.by_concept()
    assert all(len(v) >= 4 for v in by.values())
    assert all(len({img.source_family(r.source) for r in v}) >= 3 for v in by.values())
    for r in s.images[::97]:
        with Image.open(r.path) as im:
            assert im.size == (128, 128) and im.mode == "RGB"
    assert {r.source for r in s.images} >= {"google", "twitter", "openmoji", "fluent-flat", "fluent-modern"}


@built
def test_embedded_set_has_no_excluded_categories(manifest):
    from interp.data.taxonomy import load_cldr_map

    cmap = load_cldr_map()
    for name, c in manifest["concepts"].items():
        assert c["cldr"]["category"] not in EXCLUDED_CATEGORIES, name
        assert c["cldr"]["subcategory"] in cmap["subcategories"], name
        assert cmap["concepts"].get(c["cldr"]["annotation_key"], {}) is not None, name
        words = set(name.replace("-", "_").split("_"))
        assert not words & {"face", "flag", "heart", "hand", "hands", "person", "oclock", "man", "woman"}, name


@built
def test_embedded_taxonomy_consistent(manifest):
    t = img.embedded_taxonomy(ROOT)
    assert sorted(t.leaves) == sorted(manifest["concepts"])
    assert {t.depth(h) for h in t.hypernyms} == {1, 2, 3}
    for (leaf, h), d in t.distractors.items():
        assert d not in t.hypernyms_of(leaf)
    assert {"mammal", "sea animal", "animal"} <= t.hypernyms_of("whale") and "fish" not in t.hypernyms_of("whale")
    assert "fish" not in t.hypernyms_of("lobster") and "seafood" in t.hypernyms_of("lobster")
    assert t.chain("farm animal") == ["farm animal", "mammal", "animal"]
    assert t.phrase("musical instrument") == "a musical instrument" and t.phrase("clothing") == "an item of clothing"


@built
def test_embedded_split_never_shares_a_rendering(manifest):
    s = img.load_image_set(ROOT)
    sp = img.split_images(s, "renderings", seed=0)
    assert sp == img.split_images(s, "renderings", seed=0)
    where = {}
    for name, recs in sp.items():
        for r in recs:
            where.setdefault((r.concept, img.source_family(r.source)), set()).add(name)
    assert all(len(v) == 1 for v in where.values())
    assert all(sp[k] for k in ("train", "val", "test"))
    test_concepts = {r.concept for r in sp["test"]}
    assert test_concepts == set(s.concepts)


@built
def test_embedded_manifest_verifies():
    ok, why = img.verify(ROOT)
    assert ok, why


def test_an_undecodable_image_is_named_and_skipped_or_stops_the_study(tmp_path: Path, monkeypatch):
    """Issue 18, item 2: a truncated PNG in a THINGS-layout folder is named; by default the
    study skips it with a warning (its concept keeps its other images), with strict_images it
    stops naming every bad file."""
    from interp.features import UndecodableImages
    from interp.models.encoders import TinyEncoder
    from interp.studies.taxonomy.config import DataConfig, StudyConfig
    from interp.studies.taxonomy.run import load_data

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "things"
    for concept in ("aardvark", "banana"):
        (root / concept).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 40, 90, 0)).save(root / concept / f"{concept}_{i:02d}.png")
    good = (root / "banana" / "banana_00.png").read_bytes()
    bad = [root / "banana" / "x.png", root / "aardvark" / "y.png"]
    for p in bad:
        p.write_bytes(good[:60])  # truncated
    tsv = tmp_path / "taxonomy.tsv"  # the study's own small taxonomy (no dependency on shared/data)
    tsv.write_text("leaf\thypernym\tdistractor_hypernym\naardvark\tanimal\tfood\nbanana\tfood\tanimal\n")
    cfg = StudyConfig(data=DataConfig(images=str(root), taxonomy=str(tsv)))
    with pytest.raises(UndecodableImages) as e:
        load_data(cfg, TinyEncoder(), progress=False, strict_images=True)
    assert sorted(str(p) for p, _ in e.value.bad) == sorted(map(str, bad)) and str(bad[0]) in str(e.value)
    data = load_data(cfg, TinyEncoder(), progress=False)
    keys = [r.key for r in data.records]
    assert len(keys) == 6 and "banana/x.png" not in keys and len(data.features) == 6
