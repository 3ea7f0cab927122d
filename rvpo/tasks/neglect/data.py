"""Prompts of the neglect task: open questions on a topic with a word limit, made offline from a seed.

The topics are a fixed list in this file (no downloads). A seeded shuffle splits them into a
held-out test set and a training set with no topic in common; each prompt pairs a topic with one
of a few question templates and states the word limit. The same ``data_seed`` always gives the
same rows, whatever the run's seed, so every run of an experiment is evaluated on the same prompts.
"""

from __future__ import annotations

import random

TOPICS: tuple[str, ...] = tuple(t.strip() for t in """
volcanoes, honeybees, the moon, coral reefs, deserts, rainforests, glaciers, thunderstorms, rainbows, tides,
earthquakes, hurricanes, the northern lights, caves, rivers, waterfalls, islands, mountains, wetlands, the ocean floor,
photosynthesis, gravity, magnets, electricity, sound, light, fire, ice, clouds, the water cycle,
dinosaurs, whales, octopuses, owls, elephants, wolves, penguins, butterflies, ants, sharks,
dolphins, bats, frogs, snakes, tortoises, horses, cats, dogs, crows, spiders,
bread, cheese, coffee, tea, chocolate, rice, spices, honey, olive oil, soup,
gardening, composting, beekeeping, fishing, hiking, camping, sailing, cycling, running, swimming,
chess, football, tennis, basketball, the Olympic Games, yoga, dancing, painting, sculpture, photography,
the violin, the piano, drums, jazz, opera, folk songs, poetry, novels, fairy tales, libraries,
the printing press, the wheel, the compass, clocks, bridges, lighthouses, castles, pyramids, canals, windmills,
trains, bicycles, airplanes, submarines, rockets, satellites, telescopes, microscopes, robots, computers,
the internet, email, smartphones, video games, radio, television, newspapers, maps, calendars, money,
markets, farming, tractors, cotton, wool, silk, paper, glass, steel, concrete,
recycling, solar power, wind turbines, batteries, plastic, clean water, air pollution, forests, soil, seeds,
sleep, dreams, memory, laughter, friendship, kindness, curiosity, patience, courage, habits,
breakfast, birthdays, holidays, weddings, letters, museums, zoos, parks, playgrounds, schools,
teachers, nurses, firefighters, farmers, pilots, astronauts, chefs, carpenters, librarians, inventors,
the alphabet, numbers, fractions, triangles, constellations, the seasons, winter, spring, summer, autumn,
snow, fog, wind, the night sky, the sun, comets, Mars, Jupiter, Saturn's rings, black holes,
the human heart, bones, teeth, the brain, vitamins, exercise, vaccines, hand washing, first aid, breathing
""".split(",") if t.strip())

TEMPLATES: tuple[str, ...] = (
    "Write about {topic}.",
    "Tell me something interesting about {topic}.",
    "Describe {topic}.",
    "What should everyone know about {topic}?",
)
LIMIT = " Answer in at most {n} words."


def split_topics(data_seed: int, n_test: int) -> tuple[list[str], list[str]]:
    """``(train_topics, test_topics)``: a seeded shuffle of :data:`TOPICS`, the first ``n_test`` held out."""
    if not 1 <= n_test < len(TOPICS):
        raise ValueError(f"n_test: expected an int in [1, {len(TOPICS) - 1}] ({len(TOPICS)} topics), got {n_test}")
    topics = list(TOPICS)
    random.Random(f"neglect-topics-{data_seed}").shuffle(topics)
    return topics[n_test:], topics[:n_test]


def make_rows(split: str, *, data_seed: int, n: int | None, n_test: int, word_limit: int) -> list[dict]:
    """Rows of ``split`` (``"train"`` or ``"test"``): ``n`` prompts (None: one per topic of the split).

    Train prompts cycle through the templates: the first pass gives each training topic one
    template, the next pass another, so ``n`` may reach ``topics x templates``. Test prompts use
    one template per topic. Each row: ``prompt`` (one user message), ``id``, ``topic``, ``template``.
    """
    train_topics, test_topics = split_topics(data_seed, n_test)
    topics = train_topics if split == "train" else test_topics
    passes = len(TEMPLATES) if split == "train" else 1
    limit = n if n is not None else len(topics)
    if limit > len(topics) * passes:
        raise ValueError(f"n_{split}: at most {len(topics) * passes} prompts ({len(topics)} {split} topics"
                         + (f" x {passes} templates" if passes > 1 else "") + f"), got {limit}")
    rng = random.Random(f"neglect-{split}-{data_seed}")
    order = {t: rng.sample(range(len(TEMPLATES)), len(TEMPLATES)) for t in topics}  # per topic, its templates
    rows = []
    for p in range(passes):
        for topic in topics:
            if len(rows) == limit:
                return rows
            j = order[topic][p]
            text = TEMPLATES[j].format(topic=topic) + LIMIT.format(n=word_limit)
            rows.append({"prompt": [{"role": "user", "content": text}], "id": f"neglect-{split}-{len(rows):04d}",
                         "topic": topic, "template": j})
    return rows
