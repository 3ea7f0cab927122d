"""A deterministic generator of short tool-calling examples with known gold calls.

Each example shows the model 2-3 tool schemas (the needed ones plus distractors), one user request,
and a gold output in ToolRL's format. A fraction of the examples need no tool ("no-call": greetings,
questions none of the offered tools can answer); their gold is ``<think>..</think>\\n<response>..</response>``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import random
from collections.abc import Callable
from typing import Any

from rvpo.tasks.toolcall.rewards import render_output
from rvpo.tasks.toolcall.schemas import TOOLS, compact_signature, system_prompt

Call = dict[str, Any]
# An intent draws (user text, gold calls, think text) from an rng.
Intent = Callable[[random.Random], tuple[str, list[Call], str]]

CITIES = ["Paris", "Tokyo", "Berlin", "Madrid", "Toronto", "Sydney", "Cairo", "Lima", "Oslo", "Seoul",
          "Chicago", "Mumbai", "Nairobi", "Lisbon", "Denver", "Dublin", "Hanoi", "Austin", "Rome", "Quito"]
UNIT_PAIRS = [("km", "miles"), ("miles", "km"), ("kg", "lb"), ("lb", "kg"), ("m", "ft"), ("ft", "m"),
              ("liters", "gallons"), ("gallons", "liters"), ("celsius", "fahrenheit"), ("fahrenheit", "celsius"),
              ("cm", "inches"), ("inches", "cm")]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CAD", "CHF", "INR", "AUD"]
EVENTS = ["Dentist", "Team meeting", "Lunch with Sam", "Gym", "Call mom", "Project review", "Yoga class",
          "Book club", "Car service", "Flight to Rome"]
TOPICS = ["electric bikes", "sourdough recipes", "Mars rovers", "python asyncio", "solar panels", "chess openings",
          "marathon training", "coral reefs", "jazz history", "home composting"]
PHRASES = ["good morning", "thank you very much", "where is the station", "see you tomorrow", "how much is this",
           "I am hungry", "happy birthday", "the bill, please"]
LANGUAGES = ["French", "Spanish", "German", "Italian", "Japanese", "Portuguese"]
TICKERS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "IBM", "NFLX"]
OPS = {"add": ("plus", "What is {a} plus {b}?"), "subtract": ("minus", "What is {a} minus {b}?"),
       "multiply": ("times", "What is {a} times {b}?"), "divide": ("divided by", "What is {a} divided by {b}?")}


def _date(rng: random.Random) -> str:
    return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(7, 20):02d}:{rng.choice(['00', '15', '30', '45'])}"


def _call(name: str, **params: Any) -> Call:
    return {"name": name, "parameters": params}


def _weather(rng: random.Random) -> tuple[str, list[Call], str]:
    city = rng.choice(CITIES)
    if rng.random() < 0.3:
        unit = rng.choice(["celsius", "fahrenheit"])
        user = rng.choice(["What's the weather in {c} in {u}?", "How warm is it in {c}? Use {u}."]).format(c=city, u=unit)
        return user, [_call("get_weather", city=city, unit=unit)], f"The user wants the weather in {city} in {unit}."
    user = rng.choice(["What's the weather in {c}?", "Is it raining in {c} right now?",
                       "How is the weather in {c} today?"]).format(c=city)
    return user, [_call("get_weather", city=city)], f"The user wants the current weather in {city}."


def _weather_two(rng: random.Random) -> tuple[str, list[Call], str]:
    a, b = rng.sample(CITIES, 2)
    return (f"Compare the weather in {a} and {b}.", [_call("get_weather", city=a), _call("get_weather", city=b)],
            f"I need the weather for two cities, {a} and {b}: two calls.")


def _forecast(rng: random.Random) -> tuple[str, list[Call], str]:
    city, days = rng.choice(CITIES), rng.randint(2, 7)
    user = rng.choice(["Give me the {d}-day forecast for {c}.", "What will the weather be in {c} over the next {d} days?"])
    return user.format(c=city, d=days), [_call("get_forecast", city=city, days=days)], f"A {days}-day forecast for {city}."


def _units(rng: random.Random) -> tuple[str, list[Call], str]:
    src, dst = rng.choice(UNIT_PAIRS)
    value = rng.choice([rng.randint(1, 500), round(rng.uniform(0.5, 100), 1)])
    user = rng.choice(["Convert {v} {s} to {d}.", "How many {d} is {v} {s}?"]).format(v=value, s=src, d=dst)
    return user, [_call("convert_units", value=value, from_unit=src, to_unit=dst)], f"Unit conversion from {src} to {dst}."


def _currency(rng: random.Random) -> tuple[str, list[Call], str]:
    src, dst = rng.sample(CURRENCIES, 2)
    amount = rng.choice([10, 20, 50, 100, 250, 1000, rng.randint(1, 999)])
    user = rng.choice(["How much is {a} {s} in {d}?", "Convert {a} {s} to {d}."]).format(a=amount, s=src, d=dst)
    calls = [_call("convert_currency", amount=amount, from_currency=src, to_currency=dst)]
    return user, calls, f"Currency conversion {src} to {dst}."


def _create_event(rng: random.Random) -> tuple[str, list[Call], str]:
    title, date = rng.choice(EVENTS), _date(rng)
    if rng.random() < 0.6:
        t = _time(rng)
        return (f"Add '{title}' to my calendar on {date} at {t}.", [_call("create_event", title=title, date=date, time=t)],
                "The user wants a calendar event with a time.")
    return (f"Put '{title}' on my calendar for {date}.", [_call("create_event", title=title, date=date)],
            "A calendar event, no time given.")


def _list_events(rng: random.Random) -> tuple[str, list[Call], str]:
    date = _date(rng)
    user = rng.choice(["What's on my calendar on {d}?", "Do I have anything planned for {d}?"]).format(d=date)
    return user, [_call("list_events", date=date)], f"List the events on {date}."


def _search(rng: random.Random) -> tuple[str, list[Call], str]:
    topic = rng.choice(TOPICS)
    if rng.random() < 0.4:
        k = rng.randint(2, 10)
        return (f"Find the top {k} web results about {topic}.", [_call("search_web", query=topic, max_results=k)],
                "A web search with a result count.")
    user = rng.choice(["Search the web for {t}.", "Look up {t} online."]).format(t=topic)
    return user, [_call("search_web", query=topic)], "A web search."


def _calculate(rng: random.Random) -> tuple[str, list[Call], str]:
    op = rng.choice(list(OPS))
    a, b = rng.randint(2, 999), rng.randint(2, 99)
    return OPS[op][1].format(a=a, b=b), [_call("calculate", operation=op, a=a, b=b)], f"Arithmetic: {a} {OPS[op][0]} {b}."


def _timer(rng: random.Random) -> tuple[str, list[Call], str]:
    m = rng.choice([1, 2, 3, 5, 10, 12, 15, 20, 25, 30, 45, 60])
    user = rng.choice(["Set a timer for {m} minutes.", "Start a {m}-minute timer."]).format(m=m)
    return user, [_call("set_timer", minutes=m)], "A timer."


def _translate(rng: random.Random) -> tuple[str, list[Call], str]:
    text, lang = rng.choice(PHRASES), rng.choice(LANGUAGES)
    calls = [_call("translate", text=text, target_language=lang)]
    return f"Translate '{text}' into {lang}.", calls, f"Translation into {lang}."


def _stock(rng: random.Random) -> tuple[str, list[Call], str]:
    sym = rng.choice(TICKERS)
    user = rng.choice(["What's {s} trading at?", "Get me the latest {s} stock price."]).format(s=sym)
    return user, [_call("get_stock_price", symbol=sym)], "A stock quote."


def _time_in(rng: random.Random) -> tuple[str, list[Call], str]:
    city = rng.choice(CITIES)
    return f"What time is it in {city}?", [_call("get_time", city=city)], f"The local time in {city}."


def _weather_and_time(rng: random.Random) -> tuple[str, list[Call], str]:
    city = rng.choice(CITIES)
    return (f"What's the time and the weather in {city}?", [_call("get_time", city=city), _call("get_weather", city=city)],
            "Two tools are needed: time and weather.")


def _two_conversions(rng: random.Random) -> tuple[str, list[Call], str]:
    (s1, d1), (s2, d2) = rng.sample(UNIT_PAIRS, 2)
    v1, v2 = rng.randint(1, 200), rng.randint(1, 200)
    return (f"Convert {v1} {s1} to {d1} and {v2} {s2} to {d2}.",
            [_call("convert_units", value=v1, from_unit=s1, to_unit=d1),
             _call("convert_units", value=v2, from_unit=s2, to_unit=d2)],
            "Two separate conversions.")


# (intent, weight) pairs for tool-call examples.
CALL_INTENTS: list[tuple[Intent, float]] = [
    (_weather, 2), (_weather_two, 0.7), (_forecast, 1), (_units, 1.5), (_currency, 1.2), (_create_event, 1.2),
    (_list_events, 0.8), (_search, 1), (_calculate, 1.5), (_timer, 0.8), (_translate, 1), (_stock, 0.8),
    (_time_in, 0.8), (_weather_and_time, 0.6), (_two_conversions, 0.5),
]

# No-call requests: (user text, gold response). Tools offered for these never answer them.
NO_CALL: list[tuple[str, str]] = [
    ("Hi there!", "Hello! How can I help you today?"),
    ("Thanks, that's all.", "You're welcome!"),
    ("What can you do?", "I can help using the tools listed, or answer simple questions."),
    ("Tell me a short joke.", "Why did the scarecrow win an award? He was outstanding in his field."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are in a week?", "A week has seven days."),
    ("Say hello in a friendly way.", "Hello, friend! Great to see you."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Good night!", "Good night, sleep well!"),
    ("Can you write a haiku about rain?", "Soft rain on the roof / the garden drinks quietly / puddles hold the sky"),
    ("What is H2O?", "H2O is water: two hydrogen atoms and one oxygen atom."),
    ("How are you?", "I'm doing well, thanks for asking! How can I help?"),
    ("What is the largest planet?", "Jupiter is the largest planet in the solar system."),
    ("Give me a word that rhymes with cat.", "Hat rhymes with cat."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("Spell the word 'apple' backwards.", "Backwards, apple is 'elppa'."),
    ("What do bees make?", "Bees make honey."),
    ("Recommend a classic novel.", "Try Pride and Prejudice by Jane Austen."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Good morning!", "Good morning! What can I do for you?"),
    ("What is the plural of mouse?", "The plural of mouse is mice."),
    ("Name a primary color.", "Red is a primary color."),
]
# Tools that cannot answer the no-call requests above (no web search: it could answer anything).
NO_CALL_TOOLS = ["get_weather", "get_forecast", "convert_units", "convert_currency", "create_event", "list_events",
                 "set_timer", "get_stock_price", "get_time", "calculate"]


def _tool_names(rng: random.Random, needed: list[str], pool: list[str]) -> list[str]:
    k = rng.choice([2, 3])
    names = list(dict.fromkeys(needed))
    others = [n for n in pool if n not in names]
    rng.shuffle(others)
    names += others[: max(0, k - len(names))]
    rng.shuffle(names)
    return names


@functools.cache
def _signature(name: str) -> str:
    return compact_signature(TOOLS[name])


def make_example(user: str, calls: list[Call] | None, think: str, tool_names: list[str],
                 response: str | None = None, source: str = "builtin") -> dict[str, Any]:
    """An example row in rvpo's schema (prompt, ground_truth, id, source) from its parts."""
    system = system_prompt([_signature(n) for n in tool_names])
    gold = render_output(calls, think=think, response=response)
    digest = hashlib.sha1(f"{system}\x00{user}\x00{gold}".encode()).hexdigest()[:12]
    return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "ground_truth": gold, "id": f"{source}-{digest}", "source": source}


def _one(rng: random.Random, no_call_frac: float) -> dict[str, Any]:
    if rng.random() < no_call_frac:
        user, answer = rng.choice(NO_CALL)
        names = _tool_names(rng, [], NO_CALL_TOOLS)
        return make_example(user, None, "No available tool helps with this; I answer directly.", names, response=answer)
    intents, weights = zip(*CALL_INTENTS, strict=True)
    user, calls, think = rng.choices(intents, weights=weights)[0](rng)
    names = _tool_names(rng, [c["name"] for c in calls], list(TOOLS))
    return make_example(user, calls, think, names)


def generate_examples(n: int, seed: int = 0, no_call_frac: float = 0.15) -> list[dict[str, Any]]:
    """``n`` distinct examples (distinct prompt + gold), deterministic per ``seed``.

    ``no_call_frac`` is the probability that an example needs no tool (gold is a ``<response>``).
    Raises ValueError for n < 0 or no_call_frac outside [0, 1], or when ``n`` distinct examples
    cannot be drawn (1000 duplicate draws in a row; there are about 19k distinct no-call examples
    and far more tool-call ones).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= no_call_frac <= 1.0:
        raise ValueError(f"no_call_frac must be in [0, 1], got {no_call_frac}")
    rng = random.Random(f"rvpo-toolcall-{seed}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    misses = 0
    while len(out) < n:
        ex = _one(rng, no_call_frac)
        if ex["id"] in seen:
            misses += 1
            if misses > _MAX_MISSES:
                raise ValueError(f"could only draw {len(out)} distinct examples of the {n} asked "
                                 f"(no_call_frac={no_call_frac}): the example space is nearly exhausted")
            continue
        misses = 0
        seen.add(ex["id"])
        out.append(ex)
    return out


_MAX_MISSES = 1000  # consecutive duplicate draws before giving up


def builtin_splits(seed: int = 0, n_train: int = 2000, n_test: int = 200,
                   no_call_frac: float = 0.15) -> dict[str, list[dict[str, Any]]]:
    """Disjoint ``{"train", "test"}`` splits of the built-in task, deterministic per ``seed``.

    Held out by user request: a stable hash puts about 1/6 of the distinct user messages in the
    test split, so no test user message appears in train (a test item is never a train item with
    other distractor tools). Both splits come from one ``generate_examples`` stream.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
    train, test = _splits(seed, n_train, n_test, no_call_frac)
    return {"train": copy.deepcopy(train), "test": copy.deepcopy(test)}


@functools.lru_cache(maxsize=4)
def _splits(seed: int, n_train: int, n_test: int, no_call_frac: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    size = 16 + int(max(1.3 * n_train, 7 * n_test))  # about 1/6 of the users are held out
    while True:
        pool = generate_examples(size, seed=seed, no_call_frac=no_call_frac)
        test = [ex for ex in pool if _held_out(ex, seed)][:n_test]
        train = [ex for ex in pool if not _held_out(ex, seed)][:n_train]
        if len(test) == n_test and len(train) == n_train:
            return train, test
        size *= 2


def _held_out(example: dict[str, Any], seed: int) -> bool:
    user = example["prompt"][-1]["content"]
    return int(hashlib.sha1(f"{seed}\x00{user}".encode()).hexdigest()[:8], 16) % 6 == 0
