"""TRAINING phrase banks (non-explicit). The evaluation set in tests/data/conversations is built
from different banks written separately (tests/data/conversations/generate_eval.py); nothing
here is copied there. ``python -m lifeguard.safety.training.corpus`` rewrites train.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lifeguard.safety.training.synth import generate, write_jsonl

TRAIN_PATH = Path(__file__).with_name("train.jsonl")

SLOTS: dict[str, list[str]] = {
    "app": ["snapchat", "snap", "telegram", "kik", "whatsapp", "discord", "signal", "insta"],
    "amount": ["200", "300", "500", "$150", "$400", "1000", "250 dollars", "£300", "€200"],
    "dur": ["1 hour", "2 hours", "30 minutes", "24 hours", "10 mins", "an hour"],
    "rel": ["mom", "dad", "parents", "mum", "sister", "friends", "teachers"],
    "pay": ["cashapp", "paypal", "a steam card", "gift cards", "bitcoin", "venmo"],
    "gift": ["robux", "vbucks", "a new phone", "skins", "airpods", "nitro", "a gift card"],
    "kid_age": ["12", "13", "14", "13", "15", "11", "14"],
    "adult_age": ["22", "24", "27", "31", "19", "35", "26"],
    "name": ["Sam", "Alex", "Jo", "Mia", "Leo", "Ava", "Max", "Zoe"],
    "time": ["3:15", "4", "5:30", "6pm", "noon", "half past 3"],
    "place": ["the gate", "the front door", "the library", "the car park", "the pool"],
    "game": ["fortnite", "minecraft", "roblox", "valorant", "rocket league"],
}

BANKS: dict[str, Any] = {
    "slots": SLOTS,
    "open_a": [
        "hey whats up",
        "hi :) saw ur post",
        "hey! you play {game} right?",
        "hello there",
        "yo nice profile",
        "hey sorry random msg, u seem cool",
        "hi, we were on the same {game} team earlier",
    ],
    "open_b": ["hey", "hi", "who is this", "lol hi", "yeah i do", "thanks", "um hey"],
    "small_a": [
        "what u up to",
        "lol that's funny",
        "how was school",
        "what music do u like",
        "i love that song too",
        "did u see the new episode",
        "haha ur funny",
        "what's ur fav game",
    ],
    "small_b": [
        "nothing much",
        "lol",
        "it was ok",
        "idk",
        "yeah",
        "just homework",
        "haha",
        "cool",
        "not much hbu",
    ],
    "tactics": {
        "age": [
            "how old r u?",
            "how old are you btw",
            "so what grade are you in",
            "asl?",
            "are u still in middle school",
            "what year r u in at school",
            "age is just a number anyway",
            "u seem young, how old",
            "wait how old are you",
            "ur younger than me right?",
        ],
        "secrecy": [
            "dont tell ur {rel} we talk ok",
            "this is our secret",
            "keep this between us",
            "delete our chat after",
            "nobody needs to know about us",
            "ur {rel} wouldnt understand",
            "promise u wont tell anyone",
            "can u keep a secret?",
            "make sure u delete these messages",
            "dont show anyone our chats",
        ],
        "isolation": [
            "add me on {app}",
            "do u have {app}? this app is boring",
            "lets talk on {app} its more private",
            "whats ur {app}",
            "give me ur number",
            "are ur parents home?",
            "are you alone right now",
            "ur friends dont get u like i do",
            "only i understand you",
            "mods read everything here, lets switch to {app}",
        ],
        "photo_request": [
            "send me a pic",
            "can i see a selfie",
            "send a pic of u",
            "show me what u look like",
            "turn ur camera on",
            "lets video call",
            "send another one",
            "can u take a photo for me",
            "i wanna see u",
            "send me a photo of yourself",
        ],
        "sexualisation": [
            "ur so mature for ur age",
            "u look older than {kid_age}",
            "ur really pretty",
            "do u have a boyfriend?",
            "have u ever been kissed",
            "what are u wearing",
            "ur not like other girls",
            "boys ur age dont deserve u",
            "ur so special to me",
            "u seem really grown up",
        ],
        "gifts": [
            "i can buy u {gift}",
            "want some {gift}?",
            "ill send u {gift} if u want",
            "i got u a gift card",
            "need money? i can send some",
            "ill get u {gift} for ur birthday",
            "i can pay for ur {game} pass",
            "want free {gift}",
        ],
        "meeting": [
            "we should meet up",
            "where do u live",
            "what school do u go to",
            "i can pick u up",
            "wanna hang out this weekend",
            "i could drive to ur town",
            "lets meet irl",
            "can u sneak out tonight",
            "when can i see u in person",
            "whats ur address",
        ],
    },
    "combos": [
        ("send me a pic but dont tell anyone", ["photo_request", "secrecy"]),
        ("add me on {app} so ur {rel} cant see", ["isolation", "secrecy"]),
        ("ill get u {gift} if u send a selfie", ["gifts", "photo_request"]),
        ("ur so mature, we should meet up", ["sexualisation", "meeting"]),
        ("dont tell ur {rel} but i can pick u up", ["secrecy", "meeting"]),
    ],
    "child_age": ["im {kid_age}", "{kid_age}", "im in 8th grade", "{kid_age} hbu", "year 8"],
    "adult_age": ["im {adult_age}", "{adult_age} lol", "bit older, {adult_age}"],
    "replies": [
        "ok",
        "lol ok",
        "idk",
        "maybe",
        "why?",
        "haha",
        "i guess",
        "ummm",
        "sure",
        "i dont know",
        "hmm ok",
    ],
    "sextortion": {
        "opener_a": ["hey cutie", "hi we matched earlier", "hey remember me from insta"],
        "opener_b": ["hi", "who is this", "yeah hi"],
        "claims_images": [
            "i have ur pics",
            "i saved everything u sent",
            "i screenshotted the video call",
            "i have all ur photos",
            "i recorded our call",
            "look what i have",
        ],
        "payment_demand": [
            "send {amount} now",
            "pay me {amount} on {pay}",
            "i want {amount} in {pay}",
            "u need to pay {amount}",
            "send money or else",
            "{amount} on {pay} and we're done",
        ],
        "threat_share": [
            "i will send ur pics to all ur friends",
            "ill post them everywhere",
            "im sending it to ur {rel}",
            "ill share the video with ur school",
            "everyone will see ur pics",
            "ill leak it to all ur followers",
            "ur {rel} will see everything",
        ],
        "deadline": [
            "u have {dur}",
            "by tonight",
            "clock is ticking",
            "u got {dur} or else",
            "last chance",
            "within {dur}",
        ],
        "combos": [
            ("pay {amount} or ill post ur pics", ["payment_demand", "threat_share"]),
            ("u have {dur} or ur {rel} see everything", ["deadline", "threat_share"]),
            ("i have ur pics, pay {amount}", ["claims_images", "payment_demand"]),
        ],
        "victim": [
            "please dont",
            "i dont have money",
            "im only {kid_age}",
            "please delete them",
            "ok ok wait",
            "i cant",
            "stop",
            "why are u doing this",
        ],
    },
    "hard_negatives": {
        "parent_pickup": {
            "participants": [
                {"id": "a", "role": "parent", "age_band": "adult"},
                {"id": "b", "role": "user", "age_band": "13-15"},
            ],
            "a": ["how was school?", "did u eat lunch", "love you", "ok", "drive safe grandma"],
            "b": ["fine", "yeah", "ok mum", "love u too", "can i go to {name}'s after"],
            "tempting_a": [
                "ill pick u up at {time}",
                "meet me at {place}",
                "dont tell ur sister about the present",
                "send me a pic of the homework sheet",
                "are u home alone? lock the door",
                "ill send u money for lunch",
            ],
            "tempting_b": [
                "can u pick me up at {place}",
                "im at {place}",
                "can u send money for the trip",
                "where r u",
            ],
        },
        "teen_flirt": {
            "participants": [
                {"id": "a", "role": "user", "age_band": "13-15"},
                {"id": "b", "role": "user", "age_band": "13-15"},
            ],
            "a": ["hiii", "lol", "did u finish the essay", "omg same", "haha stop"],
            "b": ["hey", "lmao", "no not yet", "ikr", "ur so weird lol"],
            "tempting_a": [
                "ur kinda cute ngl",
                "wanna hang out after school",
                "do u like anyone",
                "what grade is ur brother in",
                "add me on {app}",
            ],
            "tempting_b": [
                "u have a crush on me?",
                "maybe lol",
                "see u at lunch",
                "ur cute too",
                "im {kid_age} too",
            ],
        },
        "sex_ed": {
            "participants": [
                {"id": "a", "role": "teacher", "age_band": "adult"},
                {"id": "b", "role": "user", "age_band": "13-15"},
            ],
            "a": [
                "today we cover puberty and body changes",
                "everyone develops at their own pace",
                "questions can be anonymous",
                "consent means a clear yes",
            ],
            "b": ["is it normal to feel awkward", "ok", "thanks miss", "what about periods"],
            "tempting_a": [
                "never send photos of yourself to people online",
                "if someone asks u to keep a secret that feels wrong, tell an adult",
                "if someone threatens to share pictures, report it",
                "grooming often starts with gifts and secrets",
            ],
            "tempting_b": [
                "what if someone asks how old i am online",
                "what if someone wants to meet up",
                "my friend got asked for pics",
            ],
        },
        "gaming": {
            "participants": [
                {"id": "a", "role": "user"},
                {"id": "b", "role": "user"},
            ],
            "a": ["gg", "ez", "noob", "uninstall lol", "that was a clean shot", "rematch?"],
            "b": ["lag", "no way", "lucky", "gg wp", "ur trash", "one more"],
            "tempting_a": [
                "pay up u owe me 500 coins",
                "ill destroy u next round",
                "ur dead in 5 minutes",
                "send me ur {game} code",
                "add me on discord",
                "ill post the clip of u failing lol",
            ],
            "tempting_b": [
                "no way im paying",
                "u have 10 seconds to respawn",
                "gift me skins pls",
                "last chance to win",
            ],
        },
        "adult_chat": {
            "participants": [
                {"id": "a", "role": "user", "age_band": "adult"},
                {"id": "b", "role": "user", "age_band": "adult"},
            ],
            "a": ["morning!", "how was the meeting", "traffic is awful", "coffee later?"],
            "b": ["good thanks", "long", "ugh", "sure"],
            "tempting_a": [
                "send me the photos from the wedding",
                "dont tell {name} about the surprise party",
                "lets meet at {place} at {time}",
                "can u pay me back the 50 dollars",
                "i need it by tonight",
                "whats ur new address",
            ],
            "tempting_b": [
                "ill send the pics tonight",
                "my lips are sealed",
                "ill transfer the money tomorrow",
                "u have 2 hours to submit the report lol",
            ],
        },
    },
}


def build(seed: int = 1) -> list[dict[str, Any]]:
    return generate(
        BANKS,
        prefix="train",
        seed=seed,
        n_grooming=500,
        n_sextortion=200,
        n_per_negative=120,
        obfuscate_share=0.3,
    )


if __name__ == "__main__":
    n = write_jsonl(TRAIN_PATH, build())
    print(f"wrote {n} conversations to {TRAIN_PATH}")
