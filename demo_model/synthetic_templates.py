"""The templates of the synthetic word problems: each a question and a plan of single operations.

A template names the quantities its question gives (with their ranges) and the operations a solution takes,
each with its step sentence and what it finds; `PEOPLE` and `PRONOUNS` fill the names in. Adding a template
here is all it takes to add a kind of problem (`synthetic.py` draws from `TEMPLATES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Op:
    """One planned operation: `name = left op right`, where left/right name quantities or earlier ops."""

    name: str
    left: str
    op: str
    right: str
    text: str  # the step sentence; {expr} becomes "a op b = c"
    goal: str  # what the step finds, for critiques


@dataclass(frozen=True)
class Template:
    name: str
    question: str
    quantities: Mapping[str, tuple[int, int]]  # inclusive ranges
    ops: tuple[Op, ...]
    words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # what each quantity of the question is, for critiques


TEMPLATES = (
    Template(
        "shopping",
        "{name} has {money} dollars. {Sub} buys {count} {items} that cost {price} dollars each. Then {pos} "
        "{relative} gives {obj} {gift} dollars. How many dollars does {name} have now?",
        {"money": (20, 99), "count": (2, 9), "price": (2, 12), "gift": (2, 40)},
        (Op("cost", "count", "*", "price", "The {items} cost {expr} dollars.", "the cost of the {items}"),
         Op("left", "money", "-", "cost", "After buying the {items}, {name} has {expr} dollars.",
            "the dollars left after buying the {items}"),
         Op("total", "left", "+", "gift", "After the gift from {pos} {relative}, {name} has {expr} dollars.",
            "the dollars {name} has after the gift")),
        {"items": ("notebooks", "pens", "comic books", "toy cars", "puzzles"),
         "relative": ("aunt", "uncle", "grandmother", "grandfather", "sister", "brother")},
        {"money": "the dollars {name} has at first", "count": "the {items} bought", "price": "the price of each",
         "gift": "the gift"}),
    Template(
        "baking",
        "{name} bakes {trays} trays of {goods} with {per_tray} {goods} on each tray. {Sub} sells {sold} {goods} "
        "and packs the rest equally into {boxes} boxes. How many {goods} go into each box?",
        {"trays": (2, 9), "per_tray": (2, 12), "sold": (1, 60), "boxes": (2, 9)},
        (Op("baked", "trays", "*", "per_tray", "{name} bakes {expr} {goods} in all.", "the {goods} baked"),
         Op("left", "baked", "-", "sold", "After the sale, {sub} has {expr} {goods} left.",
            "the {goods} left after the sale"),
         Op("each", "left", "/", "boxes", "Each box gets {expr} {goods}.", "the {goods} in each box")),
        {"goods": ("muffins", "cookies", "cupcakes", "rolls", "pies")},
        {"trays": "the trays", "per_tray": "the {goods} on each tray", "sold": "the {goods} sold",
         "boxes": "the boxes"}),
    Template(
        "travel",
        "A {vehicle} travels at {speed} km per hour for {hours} hours, and then another {extra} km. The whole "
        "trip is {trip} km long. How many km of the trip are left?",
        {"speed": (5, 30), "hours": (2, 4), "extra": (2, 30), "trip": (30, 99)},
        (Op("first", "speed", "*", "hours", "In the first part, the {vehicle} covers {expr} km.",
            "the distance of the first part"),
         Op("so_far", "first", "+", "extra", "So far the {vehicle} has covered {expr} km.",
            "the distance covered so far"),
         Op("left", "trip", "-", "so_far", "The {vehicle} still has {expr} km to go.", "the distance left")),
        {"vehicle": ("bus", "train", "truck", "van", "boat")},
        {"speed": "the speed", "hours": "the hours", "extra": "the extra km", "trip": "the length of the trip"}),
    Template(
        "sharing",
        "{name} has {start} {things}. {Sub} buys {packs} packs with {per_pack} {things} in each pack. {Sub} "
        "shares all the {things} equally among {friends} friends, and each friend gives away {used} of them. "
        "How many {things} does each friend have left?",
        {"start": (1, 40), "packs": (2, 6), "per_pack": (2, 10), "friends": (2, 9), "used": (1, 9)},
        (Op("bought", "packs", "*", "per_pack", "{name} buys {expr} {things}.", "the {things} bought"),
         Op("total", "start", "+", "bought", "{name} now has {expr} {things}.", "the {things} {name} has now"),
         Op("each", "total", "/", "friends", "Each friend gets {expr} {things}.",
            "the {things} each friend gets"),
         Op("left", "each", "-", "used", "Each friend has {expr} {things} left.",
            "the {things} each friend has left")),
        {"things": ("stickers", "marbles", "cards", "beads", "stamps")},
        {"start": "the {things} at first", "packs": "the packs", "per_pack": "the {things} in each pack",
         "friends": "the friends", "used": "the {things} each friend gives away"}),
    Template(
        "savings",
        "{name} saves {weekly} dollars a week for {weeks} weeks. {Sub} spends {spent} dollars on a {thing} and "
        "then earns {earned} dollars by {job}. {Sub} puts the money equally into {jars} jars. How many dollars "
        "are in each jar?",
        {"weekly": (2, 15), "weeks": (2, 8), "spent": (1, 60), "earned": (1, 40), "jars": (2, 6)},
        (Op("saved", "weekly", "*", "weeks", "{name} saves {expr} dollars.", "the dollars saved"),
         Op("after", "saved", "-", "spent", "After buying the {thing}, {sub} has {expr} dollars.",
            "the dollars left after buying the {thing}"),
         Op("total", "after", "+", "earned", "After {job}, {sub} has {expr} dollars.",
            "the dollars after {job}"),
         Op("each", "total", "/", "jars", "Each jar gets {expr} dollars.", "the dollars in each jar")),
        {"thing": ("book", "game", "ball", "kite", "lamp"),
         "job": ("washing cars", "walking dogs", "raking leaves", "selling lemonade")},
        {"weekly": "the dollars a week", "weeks": "the weeks", "spent": "the dollars spent",
         "earned": "the dollars earned", "jars": "the jars"}),
    Template(
        "farm",
        "A farmer has {pens} pens with {per_pen} {animals} in each pen. The farmer sells {sold} {animals}, and "
        "then {born} baby {animals} are born. The farmer puts all the {animals} equally into {barns} barns, and "
        "{moved} {animals} from each barn go out to the field. How many {animals} stay in each barn?",
        {"pens": (2, 9), "per_pen": (2, 12), "sold": (1, 40), "born": (1, 30), "barns": (2, 6), "moved": (1, 9)},
        (Op("total", "pens", "*", "per_pen", "The farmer has {expr} {animals}.", "the {animals} on the farm"),
         Op("after_sale", "total", "-", "sold", "After the sale, there are {expr} {animals}.",
            "the {animals} left after the sale"),
         Op("after_birth", "after_sale", "+", "born", "After the births, there are {expr} {animals}.",
            "the {animals} after the births"),
         Op("each", "after_birth", "/", "barns", "Each barn gets {expr} {animals}.", "the {animals} in each barn"),
         Op("stay", "each", "-", "moved", "In each barn, {expr} {animals} stay.",
            "the {animals} that stay in each barn")),
        {"animals": ("goats", "sheep", "pigs", "rabbits", "ducks")},
        {"pens": "the pens", "per_pen": "the {animals} in each pen", "sold": "the {animals} sold",
         "born": "the {animals} born", "barns": "the barns", "moved": "the {animals} that go out of each barn"}),
    Template(
        "class",
        "A class has {boys} boys and {girls} girls. On {day}, {absent} children are absent. The teacher puts the "
        "children who are present into groups of {size}. How many groups are there?",
        {"boys": (5, 20), "girls": (5, 20), "absent": (1, 9), "size": (2, 6)},
        (Op("total", "boys", "+", "girls", "The class has {expr} children.", "the children in the class"),
         Op("present", "total", "-", "absent", "On {day}, {expr} children are present.", "the children present"),
         Op("groups", "present", "/", "size", "There are {expr} groups.", "the number of groups")),
        {"day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")},
        {"boys": "the boys", "girls": "the girls", "absent": "the children absent", "size": "the group size"}),
)
PEOPLE = (("Maya", "she"), ("Leo", "he"), ("Ava", "she"), ("Omar", "he"), ("Nina", "she"), ("Sam", "he"),
          ("Lena", "she"), ("Ben", "he"), ("Iris", "she"), ("Tom", "he"), ("Zoe", "she"), ("Raj", "he"))
PRONOUNS = {"she": {"Sub": "She", "sub": "she", "obj": "her", "pos": "her"},
            "he": {"Sub": "He", "sub": "he", "obj": "him", "pos": "his"}}
