"""The simulator's logins: agents `agent1..N` and supervisors `supervisor1..M`.

Every account has the password `password` and a stable user id derived from its name, so
`GET /api/v2/me`, the contacts look-up and the supervisor routes agree on it. GWS keeps its
roles in the Person's annex (`htcc/roles`, team notes B.1); here an account has one role,
answered as `ROLE_AGENT` or `ROLE_SUPERVISOR`. Only agents take sessions: scenarios and
handoffs never give one to a supervisor, who sees sessions only by monitoring agents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

PASSWORD = "password"
AGENT = "agent"
SUPERVISOR = "supervisor"
_ROLE_NAMES = {AGENT: "ROLE_AGENT", SUPERVISOR: "ROLE_SUPERVISOR"}
_FIRST_NAMES = ("Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines")
_SUPERVISOR_FIRST_NAMES = ("Sofia", "Tomas", "Ursula", "Viktor", "Wanda")


@dataclass(slots=True)
class Account:
    """A login: `agentN` or `supervisorN` with the password `password`."""

    username: str
    password: str
    user_id: str
    first_name: str
    last_name: str
    role: str = AGENT

    @property
    def is_agent(self) -> bool:
        """Whether the account takes SMS sessions (a supervisor only monitors)."""
        return self.role == AGENT

    @property
    def is_supervisor(self) -> bool:
        """Whether the account may monitor agents (the `supervisor` role)."""
        return self.role == SUPERVISOR

    def roles(self) -> list[str]:
        """The `roles` array of the user and contact resources."""
        return [_ROLE_NAMES[self.role]]

    def user_json(self, base_url: str) -> dict[str, Any]:
        """The `user` object of `GET /api/v2/me`."""
        return {
            "id": self.user_id,
            "userName": self.username,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "roles": self.roles(),
            "enabled": True,
            "changePasswordOnFirstLogin": False,
            "uri": f"{base_url}/api/v2/users/{self.user_id}",
            "path": f"/users/{self.user_id}",
        }

    def contact_json(self, base_url: str) -> dict[str, Any]:
        """An entry of `GET /api/v2/contacts?type=User`: the user as a contact."""
        return {
            "id": self.user_id,
            "name": self.username,
            "type": "User",
            "userName": self.username,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "roles": self.roles(),
            "uri": f"{base_url}/api/v2/contacts/{self.user_id}",
            "path": f"/contacts/{self.user_id}",
        }


def make_user_id(username: str) -> str:
    """A stable 32-hex GWS user id for an account name."""
    return hashlib.sha256(username.encode()).hexdigest()[:32]


def make_accounts(agents: int, supervisors: int = 0) -> dict[str, Account]:
    """`agent1..agents` then `supervisor1..supervisors`, by user name."""
    accounts: dict[str, Account] = {}
    for number in range(1, agents + 1):
        name = f"agent{number}"
        first = _FIRST_NAMES[(number - 1) % len(_FIRST_NAMES)]
        accounts[name] = Account(name, PASSWORD, make_user_id(name), first, f"Agent{number}")
    for number in range(1, supervisors + 1):
        name = f"supervisor{number}"
        first = _SUPERVISOR_FIRST_NAMES[(number - 1) % len(_SUPERVISOR_FIRST_NAMES)]
        last = f"Supervisor{number}"
        accounts[name] = Account(name, PASSWORD, make_user_id(name), first, last, SUPERVISOR)
    return accounts


def find_user(accounts: dict[str, Account], user: str) -> Account | None:
    """The account a path's `{userId}` names: its user id or, for convenience, its user name."""
    account = accounts.get(user)
    if account is not None:
        return account
    return next((a for a in accounts.values() if a.user_id == user), None)
