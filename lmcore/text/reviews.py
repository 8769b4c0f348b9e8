"""A built-in sentiment set: short product and film reviews, generated from hand-written pieces.

Written for this project (no text comes from elsewhere) so that classification works
offline. A seeded generator composes each review from an opening, two or three remarks on
aspects of the thing reviewed, and often a verdict. Labels are not a matter of keywords:

* remarks are stated plainly ("the battery life is excellent"), negated ("the plot is not
  exactly gripping", "the sound is not bad at all"), or hedged;
* most reviews carry one remark that goes against their label ("the box arrived dented,
  but ..."), so "good" and "bad" words occur in both classes;
* contrasts put the deciding clause after "but" or "although", and the verdict is phrased
  with and without negation ("I would not buy it again", "no regrets").

``labeled()`` gives a balanced train/test split (800 + 200 reviews by default) and
``unlabeled_text()`` a larger pool of other reviews, never containing a test review, for
domain pre-training (the corpus ``builtin:reviews``). Same seed, same reviews.
"""

from __future__ import annotations

import random

LABELS = ("negative", "positive")
SEED = 7
N_TRAIN, N_TEST = 800, 200
POOL_REVIEWS = 6000

# What is reviewed: (name, aspects). Each aspect has words that fit its polarity.
PRODUCTS = {
    "pair of headphones": ["sound", "battery life", "fit", "noise cancelling", "case"],
    "blender": ["motor", "jug", "noise level", "blades", "lid"],
    "backpack": ["zips", "straps", "stitching", "laptop sleeve", "fabric"],
    "kettle": ["spout", "switch", "boil time", "handle", "filter"],
    "desk lamp": ["light", "dimmer", "arm", "base", "colour"],
    "pair of running shoes": ["grip", "cushioning", "laces", "sizing", "sole"],
    "keyboard": ["keys", "backlight", "cable", "layout", "software"],
    "tent": ["poles", "zip", "groundsheet", "pegs", "rain cover"],
    "coffee grinder": ["burrs", "grind setting", "hopper", "motor", "cleaning brush"],
    "phone case": ["grip", "buttons", "edges", "colour", "fit"],
    "electric toothbrush": ["battery", "brush heads", "timer", "charger", "handle"],
    "vacuum cleaner": ["suction", "battery", "bin", "attachments", "filter"],
}
FILMS = {
    "thriller": ["plot", "acting", "twist", "pacing", "soundtrack"],
    "comedy": ["jokes", "cast", "script", "timing", "ending"],
    "documentary": ["narration", "footage", "research", "editing", "music"],
    "animated film": ["animation", "voice acting", "story", "songs", "characters"],
    "science fiction film": ["effects", "world building", "plot", "dialogue", "lead actor"],
    "period drama": ["costumes", "performances", "script", "cinematography", "pacing"],
    "horror film": ["scares", "atmosphere", "sound design", "ending", "cast"],
    "musical": ["songs", "choreography", "singing", "story", "sets"],
    "war film": ["battle scenes", "acting", "score", "history", "length"],
    "romantic comedy": ["chemistry", "jokes", "leads", "script", "ending"],
}

GOOD = [
    "excellent",
    "superb",
    "great",
    "solid",
    "lovely",
    "impressive",
    "first class",
    "spot on",
    "brilliant",
]
BAD = ["poor", "awful", "flimsy", "dull", "disappointing", "weak", "a letdown", "mediocre", "dreadful"]
# Negations that read positive ("not bad at all") and negative ("not exactly great").
NOT_BAD = ["not bad at all", "never a problem", "far from disappointing", "not weak in any way"]
NOT_GOOD = [
    "not exactly great",
    "nothing special",
    "not up to much",
    "far from impressive",
    "hardly brilliant",
]
HEDGE = ["fine, I suppose", "about what you would expect", "neither here nor there", "acceptable"]

OPEN_PRODUCT = [
    "Bought this {thing} for my brother.",
    "I ordered the {thing} after reading a lot of reviews.",
    "Had this {thing} for about a month now.",
    "The {thing} arrived on Tuesday.",
    "I needed a new {thing} for work.",
    "Got the {thing} on sale last week.",
    "This is my second {thing} from this brand.",
    "A friend recommended this {thing}.",
    "",
]
OPEN_FILM = [
    "Watched this {thing} on a rainy Sunday.",
    "Saw the {thing} at the cinema with friends.",
    "I went into this {thing} knowing nothing about it.",
    "My partner picked this {thing} for movie night.",
    "Caught this {thing} on a long flight.",
    "I had waited months for this {thing}.",
    "Everyone at work was talking about this {thing}.",
    "",
]
VERDICT = {
    "positive": [
        "I would buy it again.",
        "Highly recommended.",
        "No regrets.",
        "Worth every penny.",
        "I can't find much to complain about.",
        "I have already told my friends about it.",
        "It did not disappoint.",
        "Would happily watch it again.",
        "Five stars from me.",
        "It exceeded what I hoped for.",
        "I am glad I took the chance.",
        "Not perfect, but I would not swap it for anything.",
    ],
    "negative": [
        "I would not buy it again.",
        "Save your money.",
        "Not recommended.",
        "I want my time back.",
        "It went back after a week.",
        "I expected far more.",
        "I can't recommend it.",
        "It never lived up to the hype.",
        "One star, and that is generous.",
        "Sadly it did not work out for me.",
        "I regret choosing it.",
        "Some people may like it, but not me.",
    ],
}
# A whole-review summary before the verdict, sometimes.
OVERALL = {
    "positive": [
        "Overall it works really well.",
        "All in all a pleasant surprise.",
        "On the whole I am very happy with it.",
        "Taken together it is a winner.",
        "In the end it won me over.",
    ],
    "negative": [
        "Overall it just does not work.",
        "All in all a disappointment.",
        "On the whole I am unhappy with it.",
        "Taken together it is a miss.",
        "In the end it lost me.",
    ],
}


def _remark(rng: random.Random, aspect: str, polarity: str) -> str:
    """One clause about ``aspect`` with ``polarity``, plain or negated (about half each)."""
    if polarity == "positive":
        word = rng.choice(GOOD) if rng.random() < 0.5 else rng.choice(NOT_BAD)
    else:
        word = rng.choice(BAD) if rng.random() < 0.5 else rng.choice(NOT_GOOD)
    return f"the {aspect} {_verb(aspect)} {word}"


def _verb(aspect: str) -> str:
    return "are" if aspect.endswith("s") and not aspect.endswith("ss") else "is"


def _flip(label: str) -> str:
    return "negative" if label == "positive" else "positive"


def _sentence(clause: str) -> str:
    return clause[0].upper() + clause[1:] + "."


def _contrast(rng: random.Random, minor: str, main: str) -> str:
    """``minor`` conceded, ``main`` deciding: the same two clauses in either order."""
    form = rng.random()
    if form < 0.35:
        return _sentence(f"{minor}, but {main}")
    if form < 0.6:
        return _sentence(f"although {minor}, {main}")
    if form < 0.8:
        return _sentence(f"{main}, even though {minor}")
    return _sentence(minor) + " " + _sentence(f"{rng.choice(('still', 'however', 'even so'))}, {main}")


def review(rng: random.Random) -> tuple[str, str]:
    """One (text, label) pair, the label chosen at random.

    Two kinds: a contrast (one remark each way; the label is the side of the deciding
    clause, so both kinds of word occur in it) followed by at most one agreeing remark, or
    two or three agreeing remarks, one of them often hedged.
    """
    label = rng.choice(LABELS)
    film = rng.random() < 0.5
    thing, aspects = rng.choice(list((FILMS if film else PRODUCTS).items()))
    aspects = rng.sample(aspects, 4)
    parts = [rng.choice(OPEN_FILM if film else OPEN_PRODUCT).format(thing=thing)]
    if rng.random() < 0.6:
        minor, main = _remark(rng, aspects[0], _flip(label)), _remark(rng, aspects[1], label)
        parts.append(_contrast(rng, minor, main))
        if rng.random() < 0.4:
            parts.append(_sentence(f"the {aspects[2]} {_verb(aspects[2])} {rng.choice(HEDGE)}"))
    else:
        for aspect in aspects[: rng.choice((2, 3))]:
            if rng.random() < 0.2:
                parts.append(_sentence(f"the {aspect} {_verb(aspect)} {rng.choice(HEDGE)}"))
            else:
                parts.append(_sentence(_remark(rng, aspect, label)))
    if rng.random() < 0.2:
        parts.append(rng.choice(OVERALL[label]))
    if rng.random() < 0.3:
        parts.append(rng.choice(VERDICT[label]))
    return " ".join(p for p in parts if p), label


def _unique(rng: random.Random, n: int, exclude: set[str], balanced: bool) -> list[tuple[str, str]]:
    """``n`` distinct reviews not in ``exclude`` (half of each label when ``balanced``)."""
    out: list[tuple[str, str]] = []
    need = {label: n // 2 for label in LABELS} if balanced else None
    seen = set(exclude)
    while len(out) < n:
        text, label = review(rng)
        if text in seen or (need is not None and need[label] == 0):
            continue
        seen.add(text)
        out.append((text, label))
        if need is not None:
            need[label] -= 1
    return out


def labeled(n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = SEED):
    """(train, test): lists of (text, label), balanced, with no review in both."""
    rng = random.Random(seed)
    test = _unique(rng, n_test, set(), balanced=True)
    train = _unique(rng, n_train, {t for t, _ in test}, balanced=True)
    return train, test


def unlabeled_text(n: int = POOL_REVIEWS, seed: int = SEED) -> str:
    """Other reviews, one per line, for pre-training; none is a labeled test review."""
    train, test = labeled(seed=seed)
    rng = random.Random(seed + 1)
    pool = _unique(rng, n, {t for t, _ in test}, balanced=False)
    return "\n".join(text for text, _ in pool) + "\n"
