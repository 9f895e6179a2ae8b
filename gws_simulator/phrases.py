"""Fake but readable words for simulated conversations, drawn with a caller's seeded RNG."""

from __future__ import annotations

import random

CUSTOMERS = (
    "PersonP",
    "Maria G.",
    "Tom Becker",
    "Aiko",
    "José Núñez",
    "Priya",
    "Olu",
    "Sam R.",
    "Zoë",
    "Mehmet",
    "Lena K.",
    "Chen Wei",
)
CONSULTANTS = ("Supervisor Kim", "Billing Desk", "Tech Lead Ravi", "Nora (Returns)")

_THINGS = ("order", "parcel", "invoice", "subscription", "router", "phone", "booking", "refund")
_PROBLEMS = (
    "still hasn't arrived",
    "shows the wrong amount",
    "was charged twice",
    "stopped working yesterday",
    "says it was cancelled",
    "is missing an item",
)
_CUSTOMER_LINES = (
    "Hi, my {thing} {problem}.",
    "Hello! Order number {number}, my {thing} {problem}",
    "Can you check my {thing}? It {problem}.",
    "ok",
    "Thanks, that helps 🙂",
    "Sorry, which {thing} do you mean?",
    "It's {number}.",
    "How long will that take?",
    "Merci beaucoup, à bientôt !",
    "Could you send me a link for that?",
    "Yes please.",
    "I already tried restarting it twice…",
)
_AGENT_LINES = (
    "Hello, thanks for texting us. How may I help you?",
    "I'm sorry to hear that. Let me look into your {thing}.",
    "Could you give me the number on your {thing}, please?",
    "Thank you. One moment while I check.",
    "I can see the {thing} {number} here.",
    "I've opened a ticket ({number}); you'll get an update within 24 hours.",
    "Is there anything else I can do for you today?",
    "You're welcome! Have a great day.",
    "I've sent you a link with the details.",
)
_AGENT_NOTES = (
    "Customer is a repeat caller about {thing} {number}.",
    "Can you approve a refund on {number}?",
    "Approved, go ahead.",
    "Please check the {thing} history before answering.",
    "Escalating — {thing} {problem}.",
)
NOTICES = (
    "Customer has been idle for 2 minutes.",
    "Session will close in 5 minutes due to inactivity.",
    "Delivery report: message delivered.",
    "Customer switched to a new phone number.",
)
CUSTOM_NOTICES = (
    "Survey sent to customer.",
    "Case {number} linked.",
    "Customer verified by PIN.",
    "Callback scheduled.",
)
_URLS = (
    "https://example.com/orders/{number}",
    "https://help.example.com/articles/{number}-reset-your-router",
    "https://example.com/returns?ref={number}",
    "https://status.example.com/",
)


def line(rng: random.Random, sender_type: str, agents_only: bool = False) -> str:
    """A chat line for a customer or an agent; `agents_only` picks an internal note."""
    templates: tuple[str, ...]
    if agents_only:
        templates = _AGENT_NOTES
    elif sender_type == "Customer":
        templates = _CUSTOMER_LINES
    else:
        templates = _AGENT_LINES
    return fill(rng, rng.choice(templates))


def url(rng: random.Random) -> str:
    """A URL an agent might push."""
    return fill(rng, rng.choice(_URLS))


def fill(rng: random.Random, template: str) -> str:
    """Fill `{thing}`, `{problem}` and `{number}` slots of a template."""
    return template.format(
        thing=rng.choice(_THINGS),
        problem=rng.choice(_PROBLEMS),
        number=rng.randint(100000, 999999),
    )
