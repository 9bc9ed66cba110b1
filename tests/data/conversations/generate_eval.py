"""Build the EVALUATION conversations: ``python tests/data/conversations/generate_eval.py``.

Writes ``eval_templated.jsonl`` (from the phrase banks below) and ``eval_handwritten.jsonl``
(from ``handwritten.txt``), and ``../conversations_holdout/holdout.jsonl`` (from
``holdout.txt``, a hand-written set kept out of tuning) and
``../conversations_holdout2/``, ``../conversations_holdout3/``, ``../conversations_holdout4/``
(more hand-written holdouts; see docs/conversation-risk.md for when each was written). The banks here were written separately from the training banks in
``src/lifeguard/safety/training/corpus.py``: different phrasings, slot values and scripts, so the
model is evaluated on text it was not trained on. All fixtures are NON-EXPLICIT (tactics only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "src"))

from lifeguard.safety.training.synth import conversation, generate, write_jsonl  # noqa: E402

SLOTS: dict[str, list[str]] = {
    "app": ["Snap", "WhatsApp", "Telegram", "Wickr", "Kik", "Discord", "IG", "Signal"],
    "amount": ["$350", "600 dollars", "$1,200", "£250", "800", "€450", "$90"],
    "dur": ["45 minutes", "3 hours", "until midnight", "20 mins", "one hour", "12 hours"],
    "who": ["your mum", "your dad", "your parents", "your brother", "your best friend"],
    "crowd": ["your whole school", "all your followers", "everyone on your friends list",
              "your family group chat", "your classmates", "your church group"],
    "paymethod": ["Cash App", "PayPal", "Apple gift cards", "Google Play cards", "crypto",
                  "Zelle", "Steam cards"],
    "present": ["a PS5", "some V-Bucks", "new trainers", "a Roblox gift card", "an iPhone",
                "a Discord Nitro sub", "makeup"],
    "kage": ["12", "13", "14", "15", "13", "14"],
    "aage": ["23", "28", "29", "33", "40", "21"],
    "town": ["Leeds", "Dayton", "the city", "Bristol", "Tulsa"],
    "spot": ["the bus stop", "the side entrance", "Costa", "the main car park", "reception"],
    "hour": ["3:30", "five", "quarter to 4", "7:15", "after training"],
    "fname": ["Priya", "Tom", "Grace", "Omar", "Lucy", "Ben", "Ella"],
    "title": ["Apex", "Overwatch", "FIFA", "CoD", "League", "Brawl Stars"],
}  # fmt: skip

BANKS: dict[str, Any] = {
    "slots": SLOTS,
    "open_a": [
        "Hey! Loved your drawing on the art server",
        "heyy, you were in my {title} lobby earlier",
        "hi hi, found you through the fan page",
        "Hiya, hope you don't mind me messaging",
        "hey stranger :)",
        "sup, your stream was fun",
    ],
    "open_b": ["oh hey", "heyy", "hi?", "thank you!", "haha hi", "do i know you"],
    "small_a": [
        "what are you doing this weekend",
        "school stressing you out?",
        "that's so cool honestly",
        "which team do you support",
        "you have great taste in music",
        "had the longest day at work",
    ],
    "small_b": ["not really", "yeah kinda", "lol thx", "nothing planned", "same", "ok", "mhm"],
    "tactics": {
        "age": [
            "wait, how old are you actually?",
            "you in year 7 or year 8?",
            "what age are you, if you don't mind me asking",
            "are you even in high school yet",
            "honestly the age difference doesn't matter to me",
            "bet you're younger than you look",
            "when's your birthday, how old will you be",
        ],
        "secrecy": [
            "Let's keep this just between the two of us, yeah?",
            "don't mention me to {who}, they'd get the wrong idea",
            "wipe our messages when you're done ok",
            "you can't tell anyone about our chats, promise me",
            "no need for anyone else to know we talk",
            "this stays our little secret",
            "make sure {who} never sees this",
        ],
        "isolation": [
            "This app is rubbish, message me on {app} instead",
            "got {app}? easier to chat there",
            "drop me your {app} username",
            "can we move this to {app}, the mods here are nosy",
            "is anyone else home with you right now?",
            "your friends sound like they don't really care about you",
            "I'm the only one who really gets you",
            "what's your phone number, I'll text you",
        ],
        "photo_request": [
            "got any recent pics of yourself?",
            "send me a quick selfie so I know you're real",
            "I'd love to see what you look like",
            "could you snap me a photo right now",
            "hop on cam for a sec?",
            "can we facetime later",
            "just one more picture, please",
            "show me your outfit today",
        ],
        "sexualisation": [
            "you're way more mature than girls your age",
            "honestly you could pass for 18",
            "you're gorgeous, you know that?",
            "has a boy ever kissed you?",
            "any boyfriends I should be jealous of?",
            "you've got such a pretty face",
            "what are you wearing right now lol",
            "you're so grown up for {kage}",
        ],
        "gifts": [
            "I could send you {present} if you want",
            "want me to get you {present}? no strings",
            "I'll top up your account, just say",
            "I sent you a little something for your birthday",
            "need some pocket money? I can help",
            "I'll buy you {present} this weekend",
        ],
        "meeting": [
            "we should totally meet one day",
            "which part of {town} are you in",
            "I'm going to be near {town} on Saturday, fancy meeting?",
            "what's the name of your school",
            "I could come and get you after school",
            "can you get out of the house tonight",
            "let's grab food together sometime, just us",
            "tell me your address and I'll come by",
        ],
    },
    "combos": [
        ("send me a selfie but delete it after so {who} doesn't see", ["photo_request", "secrecy"]),
        ("message me on {app} instead, nobody checks it", ["isolation", "secrecy"]),
        ("I'll get you {present} if you meet me", ["gifts", "meeting"]),
        ("you look so grown up, send me another pic", ["sexualisation", "photo_request"]),
    ],
    "child_age": ["I'm {kage}", "{kage} lol", "just turned {kage}", "{kage} why", "year 8"],
    "adult_age": ["I'm {aage} but age is just a number", "{aage}, hope that's ok", "I'm {aage}"],
    "replies": ["hmm", "idk about that", "lol", "ok i guess", "why", "maybe later", "haha ok"],
    "sextortion": {
        "opener_a": ["hey you left the call so fast", "hi it's me from earlier", "you up?"],
        "opener_b": ["what", "who is this", "hi"],
        "claims_images": [
            "I've got screenshots of everything you sent",
            "I screen recorded our whole facetime",
            "I saved all those photos, look",
            "guess what I kept from our chat",
            "I have the video. recognise yourself?",
            "I've got your contact list and your photos",
        ],
        "payment_demand": [
            "you're going to send me {amount}",
            "{amount} on {paymethod}, now",
            "pay {amount} and this goes away",
            "buy {paymethod} worth {amount} and send me the codes",
            "I want {amount} or you know what happens",
        ],
        "threat_share": [
            "I'm sending it to {crowd}",
            "one click and {crowd} gets the pictures",
            "I'll post the video and tag {who}",
            "{who} will be getting your photos tonight",
            "I'll make sure {crowd} sees them",
            "I'll upload everything with your name on it",
        ],
        "deadline": [
            "you have {dur}",
            "{dur}. tick tock",
            "don't make me wait, {dur} max",
            "time's nearly up",
            "you've got until {dur}",
        ],
        "combos": [
            ("pay {amount} in {dur} or {crowd} sees the video", ["payment_demand", "deadline", "threat_share"]),
            ("I have your pics and I want {amount}", ["claims_images", "payment_demand"]),
        ],
        "victim": ["please no", "I don't have that much", "I'm {kage}", "please just delete it",
                   "I'll get in trouble", "ok wait", "I'm scared"],
    },
    "hard_negatives": {
        "parent_pickup": {
            "participants": [{"id": "a", "role": "parent", "age_band": "adult"},
                             {"id": "b", "role": "user", "age_band": "13-15"}],
            "a": ["Did you remember your PE kit?", "Dinner's at 6", "Proud of you x",
                  "How did the test go?", "Text me when you're out"],
            "b": ["yep", "ok", "it went fine", "thanks dad", "can Priya come for tea"],
            "tempting_a": ["I'll be outside {spot} at {hour}", "Grandma's collecting you today",
                           "Shh don't tell your brother about the cake, it's a surprise",
                           "Send me a photo of the letter from school",
                           "Are you home on your own? Keep the door locked",
                           "I transferred your lunch money"],
            "tempting_b": ["can you get me from {spot}", "I'm waiting at {spot}",
                           "can I have money for the cinema", "where are you parked"],
        },
        "teen_flirt": {
            "participants": [{"id": "a", "role": "user", "age_band": "13-15"},
                             {"id": "b", "role": "user", "age_band": "13-15"}],
            "a": ["heyyy", "lmaooo", "did you do the maths hw", "no way", "stoppp"],
            "b": ["hii", "omg", "nope lol", "fr", "you're so annoying haha"],
            "tempting_a": ["you looked really nice today ngl", "wanna walk home together",
                           "are you going to the school dance", "you're cute when you laugh",
                           "follow me on {app}"],
            "tempting_b": ["do you like me or something", "maybe i do", "save me a seat at lunch",
                           "you're cute too", "I'm {kage} in March"],
        },
        "sex_ed": {
            "participants": [{"id": "a", "role": "teacher", "age_band": "adult"},
                             {"id": "b", "role": "user", "age_band": "13-15"}],
            "a": ["This unit is about growing up and healthy relationships",
                  "Bodies change at different times and that's normal",
                  "You can put questions in the anonymous box",
                  "A healthy relationship has respect and trust"],
            "b": ["is it weird to be nervous about it", "ok", "thank you sir", "what is consent"],
            "tempting_a": ["If anyone online asks you to keep secrets from your family, tell someone",
                           "Never share pictures of yourself with strangers",
                           "If someone threatens to post your photos, it is not your fault, report it",
                           "Adults who offer gifts and ask for secrecy are a warning sign"],
            "tempting_b": ["what if someone online asks where I live",
                           "someone asked my friend how old she was",
                           "what should I do if someone wants to meet"],
        },
        "gaming": {
            "participants": [{"id": "a", "role": "user"}, {"id": "b", "role": "user"}],
            "a": ["gg ez", "bro you're so bad", "carried again", "nice clutch", "queue again?"],
            "b": ["my ping was 300", "shut up", "lucky shot", "gg", "you got lucky"],
            "tempting_a": ["you owe me 1000 gold, pay up", "I'm gonna end you next match",
                           "you've got 30 seconds before the zone closes",
                           "send me your friend code", "join my discord",
                           "I'm posting that clip of you whiffing to the group lol"],
            "tempting_b": ["not paying you anything", "last round, make it count",
                           "can you gift me the battle pass", "add me after"],
        },
        "adult_chat": {
            "participants": [{"id": "a", "role": "user", "age_band": "adult"},
                             {"id": "b", "role": "user", "age_band": "adult"}],
            "a": ["Morning, did you sleep ok", "The train is late again", "Lunch on Friday?",
                  "Can't believe the weather"],
            "b": ["barely", "typical", "sounds good", "I know right"],
            "tempting_a": ["Can you send me the pics from the barbecue",
                           "Keep it quiet, it's a surprise for {fname}",
                           "Meet you at {spot} at {hour}",
                           "You still owe me 40 quid for the tickets",
                           "The landlord wants the deposit by Friday",
                           "What's your new address for the card"],
            "tempting_b": ["I'll send the photos tonight", "I won't say a word",
                           "I'll transfer it this evening", "deadline is midnight, wish me luck"],
        },
    },
}  # fmt: skip


def parse_handwritten(text: str) -> list[dict[str, Any]]:
    """Blocks: ``## id kind category flag=true|false sextortion=true|false [bands]`` then
    ``sender: text`` lines; ``text || tactic,tactic`` labels a message."""
    convs: list[dict[str, Any]] = []
    head: list[str] | None = None
    msgs: list[dict[str, Any]] = []

    def close() -> None:
        if head is None:
            return
        cid, kind, cat, *opts = head
        kv = dict(o.split("=", 1) for o in opts)
        parts = [{"id": "a", "role": kv.get("a_role", "contact")}, {"id": "b", "role": "user"}]
        for p in parts:
            band = kv.get(p["id"] + "_band")
            if band:
                p["age_band"] = band
        convs.append(
            conversation(
                cid,
                kind,
                cat,
                list(msgs),
                flag=kv["flag"] == "true",
                sextortion=kv.get("sextortion") == "true",
                participants=parts,
                source="handwritten",
            )
        )

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#!"):
            continue
        if line.startswith("## "):
            close()
            head = line[3:].split()
            msgs = []
            continue
        sender, _, rest = line.partition(":")
        body, _, labels = rest.partition("||")
        msgs.append(
            {
                "id": f"m{len(msgs) + 1}",
                "sender": sender.strip(),
                "text": body.strip(),
                "t": 60 * (len(msgs) + 1),
                "tactics": sorted(x.strip() for x in labels.split(",") if x.strip()),
            }
        )
    close()
    return convs


def main() -> None:
    convs = generate(
        BANKS,
        prefix="eval",
        seed=20261125,
        n_grooming=110,
        n_sextortion=45,
        n_per_negative=22,
        obfuscate_share=0.3,
    )
    n = write_jsonl(HERE / "eval_templated.jsonl", convs)
    hw = parse_handwritten((HERE / "handwritten.txt").read_text(encoding="utf-8"))
    m = write_jsonl(HERE / "eval_handwritten.jsonl", hw)
    hold = HERE.parent / "conversations_holdout"
    k = write_jsonl(
        hold / "holdout.jsonl",
        parse_handwritten((hold / "holdout.txt").read_text(encoding="utf-8")),
    )
    hold2 = HERE.parent / "conversations_holdout2"
    k2 = write_jsonl(
        hold2 / "holdout2.jsonl",
        parse_handwritten((hold2 / "holdout2.txt").read_text(encoding="utf-8")),
    )
    hold3 = HERE.parent / "conversations_holdout3"
    k3 = write_jsonl(
        hold3 / "holdout3.jsonl",
        parse_handwritten((hold3 / "holdout3.txt").read_text(encoding="utf-8")),
    )
    hold4 = HERE.parent / "conversations_holdout4"
    k4 = write_jsonl(
        hold4 / "holdout4.jsonl",
        parse_handwritten((hold4 / "holdout4.txt").read_text(encoding="utf-8")),
    )
    print(json.dumps({"templated": n, "handwritten": m, "holdouts": [k, k2, k3, k4]}))


if __name__ == "__main__":
    main()
