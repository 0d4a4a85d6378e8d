"""Build the task files of the task-vector study from sources available offline.

    python -m interp.data.tasks.build            # (re)write interp/data/tasks/*.json
    python -m interp.data.tasks.build --check    # exit 1 if a file differs from a fresh build

Sources, per task (also written into each file's ``sources`` field):

- ``hypernym`` (image): the embedded taxonomy (``interp/data/cldr_map.json``, CLDR emoji
  subcategories cross-checked with WordNet 3.0, see DATA.md). Leaves with one chain of
  hypernyms; canonical answer = the most specific hypernym of depth <= 2 ("robin : bird",
  "cow : mammal"), every true hypernym of the leaf accepted.
- ``country_capital`` (text): WordNet 3.0 (Debian ``wordnet-base``): instances of
  ``national_capital`` and their part-holonym (``#p``) country; every WordNet lemma of the
  capital accepted. Hand corrections (listed in ``CAPITAL_FIXES``) for outdated or odd
  entries (Myanmar, Tanzania, Kazakhstan dropped; Ottawa's holonym is Ontario -> Canada ...).
- ``antonym`` (text): WordNet 3.0 adjectives (``data.adj``), direct antonym pointers (``!``)
  between single words frequent in the semantic concordance (``cntlist.rev``).
- ``animal_young``, ``food_colour``, ``object_material`` (image): no package holds these
  facts; hand-curated over the embedded concepts (general knowledge, as in dictionaries).
  For ``animal_young`` the WordNet gloss of the young's noun is recorded when WordNet has
  one ("calf: young of domestic cattle").

Splits are seeded and fixed in the files: ``val`` = min(30, 20%), ``test`` = min(100, what is
left after keeping min(30, 25%) for ``train``), ``train`` (the demonstration pool) = the rest.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from interp.data.images import embedded_taxonomy
from interp.data.tasks import TASK_DIR, task_from_dict
from interp.data.taxonomy import display_name
from interp.data.wordnet import data_lines, index_lines, load_wordnet, wordnet_dir
from interp.io import write_text

SEED = 0

# ------------------------------------------------------------- curated lists
# animal (embedded concept) -> accepted names of its young, canonical first.
ANIMAL_YOUNG: dict[str, list[str]] = {
    "cat": ["kitten", "kitty"], "dog": ["puppy", "pup"], "cow": ["calf"], "ox": ["calf"], "bison": ["calf"],
    "water_buffalo": ["calf"], "horse": ["foal", "colt", "filly"], "donkey": ["foal"], "zebra": ["foal"],
    "pig": ["piglet", "piggy"], "wild_boar": ["piglet", "boarlet"], "sheep": ["lamb"], "goat": ["kid"],
    "deer": ["fawn"], "bear": ["cub"], "lion": ["cub"], "tiger": ["cub"], "leopard": ["cub"], "panda": ["cub"],
    "fox": ["kit", "cub", "pup"], "wolf": ["pup", "cub", "whelp"], "kangaroo": ["joey"], "koala": ["joey"],
    "elephant": ["calf"], "whale": ["calf"], "dolphin": ["calf"], "giraffe": ["calf"], "camel": ["calf"],
    "hippopotamus": ["calf"], "rhinoceros": ["calf"], "seal": ["pup"], "otter": ["pup", "kit"],
    "rabbit": ["kit", "bunny", "kitten"], "rat": ["pup", "kitten"], "mouse": ["pup", "pinkie"], "hamster": ["pup"],
    "beaver": ["kit"], "skunk": ["kit"], "bat": ["pup"], "llama": ["cria"], "hen": ["chick"], "rooster": ["chick"],
    "duck": ["duckling"], "goose": ["gosling"], "swan": ["cygnet"], "eagle": ["eaglet"], "owl": ["owlet"],
    "turkey": ["poult"], "penguin": ["chick"], "dove": ["squab"], "frog": ["tadpole", "polliwog"],
    "butterfly": ["caterpillar", "larva"], "fly": ["maggot", "larva"], "mosquito": ["larva", "wriggler"],
    "shark": ["pup"], "tropical_fish": ["fry"], "crocodile": ["hatchling"], "turtle": ["hatchling"],
    "snake": ["snakelet", "hatchling"],
}

# food or drink (embedded concept) -> accepted colours, canonical first (the usual colour).
FOOD_COLOUR: dict[str, list[str]] = {
    "apple": ["red", "green"], "avocado": ["green"], "banana": ["yellow"], "blueberry": ["blue", "purple"],
    "cantaloupe": ["orange"], "cherry": ["red"], "coconut": ["brown", "white"], "grape": ["purple", "green"],
    "kiwi": ["green", "brown"], "lemon": ["yellow"], "lime": ["green"], "mango": ["orange", "yellow"],
    "olive": ["green", "black"], "peach": ["orange", "pink"], "pear": ["green", "yellow"],
    "pineapple": ["yellow", "brown"], "strawberry": ["red"], "tangerine": ["orange"],
    "watermelon": ["green", "red"], "bean": ["brown", "red"], "bell_pepper": ["green", "red"],
    "broccoli": ["green"], "carrot": ["orange"], "chili_pepper": ["red"], "corn": ["yellow"],
    "cucumber": ["green"], "eggplant": ["purple"], "garlic": ["white"], "ginger": ["brown", "yellow"],
    "leafy_green": ["green"], "pea": ["green"], "potato": ["brown"], "sweet_potato": ["orange", "brown", "purple"],
    "tomato": ["red"], "butter": ["yellow"], "cheese": ["yellow", "orange"], "egg": ["white", "brown"],
    "honey": ["yellow", "golden", "gold", "amber"], "rice": ["white"], "peanut": ["brown"], "chestnut": ["brown"],
    "bacon": ["red", "pink", "brown"], "cookie": ["brown"], "loaf_of_bread": ["brown"], "pretzel": ["brown"],
    "popcorn": ["white", "yellow"], "salad": ["green"], "french_fries": ["yellow", "golden"],
    "shrimp": ["pink", "orange"], "lobster": ["red"], "crab": ["red", "orange"], "pancake": ["brown", "golden"],
    "waffle": ["brown", "golden"], "steak": ["red", "brown"], "milk": ["white"], "coffee": ["brown", "black"],
    "wine": ["red", "white"], "beer": ["yellow", "golden", "gold", "amber"], "candy_bar": ["brown"],
    "custard": ["yellow"], "croissant": ["brown", "golden"], "bagel": ["brown"], "fried_egg": ["yellow", "white"],
    "curry": ["yellow", "orange", "brown"],
}

# object (embedded concept) -> accepted materials, canonical first (what it is usually made of).
OBJECT_MATERIAL: dict[str, list[str]] = {
    "barrel": ["wood", "wooden", "oak"], "basket": ["wicker", "straw", "wood"], "candle": ["wax"],
    "chain": ["metal", "steel", "iron"], "envelope": ["paper"], "book": ["paper"], "notepad": ["paper"],
    "calendar": ["paper"], "cardboard_box": ["cardboard", "paper"], "toilet_paper": ["paper"],
    "playing_card": ["paper", "cardboard"], "paper_lantern": ["paper"], "pinata": ["paper", "cardboard"],
    "pencil": ["wood", "wooden"], "crayon": ["wax"], "chopsticks": ["wood", "wooden", "bamboo"],
    "key": ["metal", "brass", "iron", "steel"], "padlock": ["metal", "steel", "brass", "iron"],
    "hammer": ["metal", "steel", "iron", "wood"], "axe": ["metal", "steel", "iron", "wood"],
    "saw": ["metal", "steel"], "wrench": ["metal", "steel"], "screwdriver": ["metal", "steel"],
    "scissors": ["metal", "steel"], "kitchen_knife": ["steel", "metal"], "dagger": ["steel", "metal", "iron"],
    "needle": ["metal", "steel"], "safety_pin": ["metal", "steel"], "paperclip": ["metal", "steel", "wire"],
    "nut_and_bolt": ["metal", "steel"], "hook": ["metal", "steel"], "magnet": ["metal", "iron"],
    "spoon": ["metal", "steel", "silver"], "pickaxe": ["metal", "iron", "steel"], "gear": ["metal", "steel"],
    "chair": ["wood", "wooden"], "bed": ["wood", "wooden"], "coffin": ["wood", "wooden"],
    "canoe": ["wood", "wooden"], "ladder": ["wood", "wooden", "aluminum", "aluminium", "metal"],
    "boomerang": ["wood", "wooden"], "cricket_bat": ["wood", "wooden", "willow"], "sled": ["wood", "wooden"],
    "skateboard": ["wood", "wooden"], "nesting_doll": ["wood", "wooden"], "violin": ["wood", "wooden"],
    "guitar": ["wood", "wooden"], "baseball": ["leather"], "football": ["leather"],
    "boxing_glove": ["leather"], "briefcase": ["leather"], "handbag": ["leather"],
    "glove": ["leather", "wool", "cotton", "rubber"], "boot": ["leather", "rubber"],
    "tennis_ball": ["rubber", "felt"], "balloon": ["rubber", "latex"], "basketball": ["rubber", "leather"],
    "plunger": ["rubber"], "life_buoy": ["rubber", "plastic", "foam"], "frisbee": ["plastic"],
    "squirt_gun": ["plastic"], "game_controller": ["plastic"], "computer_mouse": ["plastic"],
    "toothbrush": ["plastic"], "ruler": ["plastic", "wood", "wooden"], "mirror": ["glass"],
    "magnifying_glass": ["glass"], "test_tube": ["glass"], "lightbulb": ["glass"], "tumbler": ["glass"],
    "jar": ["glass", "clay"], "crystal_ball": ["glass", "crystal"], "hourglass": ["glass"],
    "teapot": ["porcelain", "ceramic", "clay", "china", "metal"], "bathtub": ["porcelain", "ceramic", "enamel"],
    "sock": ["wool", "cotton"], "scarf": ["wool", "silk", "cotton"], "yarn": ["wool", "cotton"],
    "t-shirt": ["cotton"], "jeans": ["denim", "cotton"], "kimono": ["silk"], "tie": ["silk"],
    "underwear": ["cotton"], "coat": ["wool", "leather"], "baseball_cap": ["cotton"],
    "ring": ["gold", "silver", "metal"], "crown": ["gold", "metal"], "military_helmet": ["steel", "metal"],
    "trumpet": ["brass", "metal"], "saxophone": ["brass", "metal"], "post_horn": ["brass", "metal"],
    "bell": ["bronze", "brass", "metal"], "mailbox": ["metal", "steel"], "filing_cabinet": ["metal", "steel"],
    "extinguisher": ["metal", "steel"], "railway_car": ["steel", "metal"], "airplane": ["aluminum", "aluminium", "metal"],
    "curling_stone": ["granite", "stone"], "broom": ["straw", "wood"], "teddy_bear": ["cotton", "plush", "fabric", "wool"],
    "jack-o-lantern": ["pumpkin"], "oil_lamp": ["brass", "metal", "clay"],
}

# country_capital: corrections of the WordNet 3.0 (2006) capital list, by WordNet capital lemma.
CAPITAL_FIXES: dict[str, tuple[str, str] | None] = {
    "Yangon": None,  # Myanmar moved its capital to Naypyidaw (2005)
    "Dar_es_Salaam": None,  # Tanzania's capital is Dodoma
    "Lhasa": None,  # Tibet is not a country
    "Colombo": None,  # Sri Lanka's capital is Sri Jayawardenepura Kotte
    "Brazzaville": ("Republic of the Congo", "Brazzaville"),
    "Kinshasa": ("Democratic Republic of the Congo", "Kinshasa"),
    "Ottawa": ("Canada", "Ottawa"),  # WordNet's holonym is Ontario
    "Kampala": ("Uganda", "Kampala"),  # WordNet's holonym is Buganda
    "Belgrade": ("Serbia", "Belgrade"),  # WordNet: Serbia and Montenegro
    "London": ("United Kingdom", "London"),  # WordNet's holonym is England
    "Skopje": ("North Macedonia", "Skopje"),
    "Mbabane": ("Eswatini", "Mbabane"),
    "Gran_Santiago": ("Chile", "Santiago"),
}
# capitals WordNet lists under a region rather than the country (no country holonym)
CAPITAL_ADD = [("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"), ("Taiwan", "Taipei"),
               ("India", "New Delhi"), ("Indonesia", "Jakarta"), ("Trinidad and Tobago", "Port of Spain"),
               ("United States", "Washington"), ("Kazakhstan", "Astana")]
# common English spelling first where WordNet's first lemma is not it
CAPITAL_NAMES = {"Bayrut": "Beirut", "Warszawa": "Warsaw", "Teheran": "Tehran", "Dimash": "Damascus",
                 "Bruxelles": "Brussels", "Kyyiv": "Kyiv", "Sana": "Sanaa", "Kishinev": "Chisinau",
                 "Ashkhabad": "Ashgabat", "Luxembourg-Ville": "Luxembourg", "Monaco-Ville": "Monaco",
                 "Ulan_Bator": "Ulaanbaatar", "Porto_Novo": "Porto-Novo", "Putrajaya": "Kuala Lumpur"}
CAPITAL_EXTRA = {"Bolivia": ["Sucre"], "Malaysia": ["Putrajaya"], "Kyiv": ["Kiev"],
                 "Chisinau": ["Kishinev"], "Ashgabat": ["Ashkhabad"]}

INSTRUCTIONS = {
    "hypernym": "Name the category each thing belongs to.",
    "animal_young": "Name the young of each animal.",
    "food_colour": "Name the colour of each food.",
    "object_material": "Name the material each object is made of.",
    "country_capital": "Name the capital city of each country.",
    "antonym": "Give the opposite of each word.",
}
CURATED_NOTE = ("hand-curated over the embedded image concepts (general knowledge as in any dictionary; no "
                "package here holds these facts); every reasonable answer accepted; inputs are embedded concepts, "
                "so each item can be posed as a word or as an image")


# ------------------------------------------------------------------ helpers
def assign_splits(n: int, seed: int, name: str) -> list[str]:
    """Seeded split labels for ``n`` items (see module doc)."""
    n_val = min(30, round(0.2 * n))
    n_train_min = min(30, round(0.25 * n))
    n_test = min(100, n - n_val - n_train_min)
    labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    order = list(range(n))
    random.Random(f"{name}:{seed}").shuffle(order)
    out = [""] * n
    for lab, i in zip(labels, order):
        out[i] = lab
    return out


def _items(rows: list[dict], name: str) -> list[dict]:
    rows = sorted(rows, key=lambda r: r["input"].lower())
    for r, s in zip(rows, assign_splits(len(rows), SEED, name)):
        r["split"] = s
    return rows


def _check_concepts(table: dict[str, list[str]], leaves: set[str], name: str) -> None:
    missing = sorted(set(table) - leaves)
    if missing:
        raise ValueError(f"{name}: concepts not in the embedded taxonomy: {missing}")


def _wn_gloss(wn, word: str) -> str | None:
    senses = wn.synsets(word)
    animal = [s for s in senses if s.lexname == "noun.animal"]
    return (animal or senses)[0].gloss.split(";")[0] if senses else None


# ------------------------------------------------------------------- tasks
def build_hypernym(taxonomy) -> dict:
    rows = []
    for leaf in sorted(taxonomy.leaves):
        hyps = sorted(taxonomy.hypernyms_of(leaf), key=lambda h: (taxonomy.depth(h), h))
        tops = [h for h in hyps if taxonomy.depth(h) == 1]
        if len(tops) != 1:  # e.g. backpack: container and school supply -> ambiguous, skipped
            continue
        chain = set(taxonomy.chain(hyps[-1])) | {hyps[-1]}
        if set(hyps) - chain:  # not a single chain
            continue
        canon = max((h for h in hyps if taxonomy.depth(h) <= 2), key=taxonomy.depth)
        others = sorted(set(hyps) - {canon}, key=lambda h: -taxonomy.depth(h))
        rows.append({"input": display_name(leaf), "answers": [canon] + others, "concept": leaf})
    return {"name": "hypernym", "description": "object -> its category (robin : bird)", "image": True,
            "instruction": INSTRUCTIONS["hypernym"],
            "sources": ("embedded taxonomy (interp/data/cldr_map.json: CLDR emoji subcategories mapped to "
                        "categories, cross-checked with WordNet 3.0; DATA.md); leaves with a single hypernym chain; "
                        "canonical answer = most specific hypernym of depth <= 2, all true hypernyms accepted"),
            "items": _items(rows, "hypernym")}


def build_curated(name: str, table: dict[str, list[str]], description: str, taxonomy, wn=None) -> dict:
    _check_concepts(table, set(taxonomy.leaves), name)
    rows = []
    for concept, answers in table.items():
        row = {"input": display_name(concept), "answers": list(dict.fromkeys(answers)), "concept": concept}
        if wn is not None:
            gloss = _wn_gloss(wn, answers[0])
            if gloss:
                row["wordnet_gloss"] = f"{answers[0]}: {gloss}"
        rows.append(row)
    sources = CURATED_NOTE + (" (WordNet 3.0 gloss of the young's noun recorded per item where WordNet has one)"
                              if wn is not None else "")
    return {"name": name, "description": description, "image": True, "instruction": INSTRUCTIONS[name],
            "sources": sources, "items": _items(rows, name)}


def noun_part_holonyms(path: Path) -> dict[int, list[int]]:
    """Offset -> part-holonym (``#p``) noun offsets, from ``data.noun``."""
    return {d.offset: [p.target for p in d.pointers if p.symbol == "#p" and p.pos == "n"] for d in data_lines(path)}


def build_country_capital(wn, wordnet_dir: Path) -> dict:
    holo = noun_part_holonyms(wordnet_dir / "data.noun")
    cap = wn.synsets("national_capital")[0].offset
    countryish: set[int] = set()
    for w in ("country", "state", "nation", "kingdom", "republic", "sultanate", "emirate", "principality", "monarchy"):
        countryish |= {s.offset for s in wn.synsets(w)}
    rows: dict[str, dict] = {}
    for s in (s for s in wn.all_synsets() if cap in s.hypernyms):
        first = s.lemmas[0]
        countries = [wn.synset(h) for h in holo.get(s.offset, []) if wn.ancestors(h) & countryish]
        if first in CAPITAL_FIXES:
            fix = CAPITAL_FIXES[first]
            if fix is None:
                continue
            country, name = fix
        elif countries:
            country, name = countries[0].lemmas[0].replace("_", " "), first.replace("_", " ")
        else:
            continue
        name = CAPITAL_NAMES.get(name.replace(" ", "_"), name)
        lemmas = [lm.replace("_", " ") for lm in s.lemmas if "capital" not in lm.lower()]
        # other spellings and former names; multi-word nicknames ("City of Light") only when they
        # start like the name, so that a first-token match cannot be a generic word
        lemmas = [lm for lm in lemmas if " " not in lm or lm.split()[0] == name.split()[0]]
        answers = list(dict.fromkeys([name] + CAPITAL_EXTRA.get(name, []) + CAPITAL_EXTRA.get(country, []) + lemmas))
        rows[country] = {"input": country, "answers": answers, "wordnet": first}
    for country, name in CAPITAL_ADD:
        if country not in rows:
            rows[country] = {"input": country, "answers": [name], "wordnet": None}
    return {"name": "country_capital", "description": "country -> capital city (France : Paris)", "image": False,
            "instruction": INSTRUCTIONS["country_capital"],
            "sources": ("WordNet 3.0 (Debian wordnet-base): instances of national_capital and their part-holonym "
                        "country; all WordNet lemmas of the capital accepted; hand corrections for outdated or "
                        "region-level entries (interp/data/tasks/build.py CAPITAL_FIXES/CAPITAL_ADD)"),
            "items": _items(list(rows.values()), "country_capital")}


def build_antonym(wordnet_dir: Path, n: int = 200, min_count: int = 3) -> dict:
    """Direct antonyms of WordNet adjectives: single words, both used >= ``min_count`` times in
    the semantic concordance (``cntlist.rev``); answers = every direct antonym of the input,
    most frequent sense first."""
    counts: dict[str, int] = {}
    for line in (wordnet_dir / "cntlist.rev").read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, cnt = line.split()
        lemma, _, rest = key.partition("%")
        if rest[:1] in ("3", "5"):  # adjective, satellite
            counts[lemma] = counts.get(lemma, 0) + int(cnt)
    sense_rank = {(lemma, off): r for lemma, offs in index_lines(wordnet_dir / "index.adj") for r, off in enumerate(offs)}
    words: dict[int, list[str]] = {}
    ants: dict[str, list[tuple[int, str]]] = {}
    raw = []
    for d in data_lines(wordnet_dir / "data.adj"):
        words[d.offset] = [w.split("(")[0].lower() for w in d.words]
        raw += [(d.offset, p.source, p.target, p.dest) for p in d.pointers if p.symbol == "!" and p.pos in ("a", "s")]
    for off, src, tgt, dst in raw:
        a, b = words[off][src - 1], words[tgt][dst - 1]
        if a.isalpha() and b.isalpha() and a != b and min(counts.get(a, 0), counts.get(b, 0)) >= min_count:
            ants.setdefault(a, []).append((sense_rank.get((a, off), 99), b))
    answers = {a: list(dict.fromkeys(b for _, b in sorted(v))) for a, v in ants.items()}
    pairs = sorted({tuple(sorted((a, bs[0]))) for a, bs in answers.items()})
    rng = random.Random(f"antonym:{SEED}")
    rng.shuffle(pairs)
    rows, seen = [], set()
    for a, b in pairs:  # one direction per pair, each word used once
        x, y = (a, b) if rng.random() < 0.5 else (b, a)
        if x in seen or y in seen or x not in answers:
            continue
        seen |= {x, y}
        rows.append({"input": x, "answers": answers[x]})
        if len(rows) == n:
            break
    return {"name": "antonym", "description": "adjective -> its antonym (hot : cold)", "image": False,
            "instruction": INSTRUCTIONS["antonym"],
            "sources": (f"WordNet 3.0 adjectives (Debian wordnet-base): direct antonym pointers (data.adj) between "
                        f"single words used >= {min_count} times in the semantic concordance (cntlist.rev); one "
                        f"direction per pair (seeded), every direct antonym of the input accepted, most frequent "
                        f"sense first"),
            "items": _items(rows, "antonym")}


def build_all() -> dict[str, dict]:
    taxonomy = embedded_taxonomy()
    wn = load_wordnet()
    tasks = [
        build_hypernym(taxonomy),
        build_curated("animal_young", ANIMAL_YOUNG, "animal -> its young (cow : calf)", taxonomy, wn),
        build_curated("food_colour", FOOD_COLOUR, "food -> its colour (banana : yellow)", taxonomy),
        build_curated("object_material", OBJECT_MATERIAL, "object -> what it is made of (candle : wax)", taxonomy),
        build_country_capital(wn, wordnet_dir()),
        build_antonym(wordnet_dir()),
    ]
    for t in tasks:
        t["counts"] = {s: sum(it["split"] == s for it in t["items"]) for s in ("train", "val", "test")}
        task_from_dict(t)  # validates
    return {t["name"]: t for t in tasks}


def render(task: dict) -> str:
    return json.dumps(task, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interp.data.tasks.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    ap.add_argument("--out", default=str(TASK_DIR))
    args = ap.parse_args(argv)
    out = Path(args.out)
    bad = []
    for name, task in build_all().items():
        path = out / f"{name}.json"
        text = render(task)
        if args.check:
            if not path.exists() or path.read_text() != text:
                bad.append(name)
        else:
            write_text(path, text)
            path.chmod(0o644)
        print(f"{name:16s} {task['counts']}  image={task['image']}")
    if bad:
        print(f"differ from a fresh build: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
