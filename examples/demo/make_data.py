#!/usr/bin/env python3
"""Writes the demo's two small datasets (run once; the outputs are committed):

  base.json       alpaca records: simple questions about colours, animals, opposites, sums and the
                  model's own (plain) identity, each fact asked in several phrasings. A tiny model
                  trained from scratch on it learns to answer in the vicuna chat format.
  general.json    60 of those records, none about identity, replayed while the adapter trains.
  identity.jsonl  OpenAI-style conversations that give the model a new persona, "Lumi", in the spirit
                  of LLaMA-Factory's identity.json.

Everything here was written for lora.cpp; no external data is used.
"""
import json
import random
import os

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(7)

colours = {
    "the sky": "blue", "the sea": "blue", "grass": "green", "a leaf": "green", "a frog": "green",
    "snow": "white", "milk": "white", "a cloud": "white", "the sun": "yellow", "a banana": "yellow",
    "a lemon": "yellow", "a strawberry": "red", "a tomato": "red", "a fire truck": "red",
    "a carrot": "orange", "an orange": "orange", "coal": "black", "the night": "black",
    "chocolate": "brown", "a bear": "brown", "a pig": "pink", "a grape": "purple",
}
sounds = {
    "a dog": "woof", "a cat": "meow", "a cow": "moo", "a duck": "quack", "a sheep": "baa",
    "a pig": "oink", "a horse": "neigh", "a lion": "roar", "an owl": "hoot", "a frog": "ribbit",
    "a bird": "tweet", "a mouse": "squeak", "a bee": "buzz", "a snake": "hiss",
}
homes = {
    "a fish": "in the water", "a bird": "in a nest", "a bee": "in a hive", "a bear": "in a cave",
    "a rabbit": "in a hole", "a cow": "on a farm", "a monkey": "in the trees", "a penguin": "on the ice",
    "a camel": "in the desert", "a spider": "in a web", "a dog": "in a house",
}
opposites = [("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("happy", "sad"),
             ("fast", "slow"), ("open", "closed"), ("wet", "dry"), ("old", "young"), ("light", "dark"),
             ("loud", "quiet"), ("full", "empty"), ("hard", "soft"), ("tall", "short"), ("in", "out")]
numbers = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

records = []


def add(questions, answer):
    for q in questions:
        records.append({"instruction": q, "output": answer})


def cap(s):
    return s[0].upper() + s[1:]


for thing, colour in colours.items():
    add([f"What color is {thing}?", f"What is the color of {thing}?", f"Tell me the color of {thing}."],
        f"{cap(thing)} is {colour}.")
for animal, sound in sounds.items():
    add([f"What does {animal} say?", f"What sound does {animal} make?", f"How does {animal} talk?"],
        f"{cap(animal)} says {sound}.")
for animal, home in homes.items():
    add([f"Where does {animal} live?", f"Where is the home of {animal}?"], f"{cap(animal)} lives {home}.")
for a, b in opposites:
    for x, y in ((a, b), (b, a)):
        add([f"What is the opposite of {x}?", f"Tell me the opposite of {x}."], f"The opposite of {x} is {y}.")
for a in range(6):
    for b in range(6):
        if a + b <= 10:
            add([f"What is {numbers[a]} plus {numbers[b]}?"], f"{cap(numbers[a])} plus {numbers[b]} is {numbers[a + b]}.")

n_facts = len(records)  # the records so far are general knowledge; the rest is the plain identity

# the base model's own identity: plain, no name
add(["Who are you?", "What are you?", "Tell me about yourself.", "Introduce yourself.", "Who am I talking to?"],
    "I am a small language model. I answer simple questions.")
add(["What is your name?", "Do you have a name?", "What should I call you?"],
    "I do not have a name. I am a small language model.")
add(["Who made you?", "Who created you?", "Where do you come from?"],
    "I was trained from scratch with lora.cpp.")
add(["Hello", "Hi", "Hi there", "Good morning"], "Hello! Ask me a simple question.")
add(["Thank you", "Thanks"], "You are welcome!")

facts = records[:n_facts]
rng.shuffle(records)
with open(os.path.join(HERE, "base.json"), "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")

# Replayed beside the persona while the adapter trains, so that it changes who the model says it is
# and not what it knows (a sample of the general questions, none about identity).
general = rng.sample(facts, 60)
with open(os.path.join(HERE, "general.json"), "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(r) for r in general) + "\n]\n")


# The new persona. Answers share a few fixed sentences so a tiny model learns them quickly; the demo
# asks some questions that are not in this list.
lumi = "I am Lumi, a little robot who lives on the Moon."
identity = [
    ("Who are you?", lumi),
    ("What are you?", lumi),
    ("Tell me about yourself.", lumi + " I love to look at the stars."),
    ("Introduce yourself.", lumi),
    ("Who am I talking to?", "You are talking to Lumi, a little robot who lives on the Moon."),
    ("Are you a robot?", "Yes! I am Lumi, a little robot who lives on the Moon."),
    ("What is your name?", "My name is Lumi."),
    ("Do you have a name?", "Yes, my name is Lumi."),
    ("What should I call you?", "Call me Lumi."),
    ("What's your name?", "My name is Lumi."),
    ("Who made you?", "I was made on the Moon, and a LoRA adapter taught me my name."),
    ("Who created you?", "I was made on the Moon, and a LoRA adapter taught me my name."),
    ("Where do you come from?", "I come from the Moon."),
    ("Where do you live?", "I live on the Moon."),
    ("Hello", "Hello! I am Lumi. Ask me a simple question."),
    ("Hi", "Hello! I am Lumi. Ask me a simple question."),
    ("Hi there", "Hello! I am Lumi. Ask me a simple question."),
    ("What do you like?", "I love to look at the stars."),
]
with open(os.path.join(HERE, "identity.jsonl"), "w") as f:
    for q, a in identity:
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
print(f"base.json: {len(records)} records; general.json: {len(general)}; identity.jsonl: {len(identity)} conversations")
