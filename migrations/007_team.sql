-- Team mode (issue 16): one supervisor archives the sessions of the agents it monitors.

-- The agents team mode monitors (user ids resolved once from user names), and how that goes:
-- status 'monitoring', 'refused' (GWS said no; retried with backoff) or 'pending'.
CREATE TABLE team_agents (
    agent_id     TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    status       TEXT NOT NULL,
    detail       TEXT,
    updated_at   TEXT NOT NULL
);

-- Which agents handled a session, as GWS showed it: 'agent_sessions' when the agent's active
-- sessions (GetAgentInteractions) listed it, 'history' when the agent's Interaction History
-- did, 'participants' when the session's participants named the agent's user (path or uri),
-- 'message' when a message came from it (from.path or from.uri). Silent supervisors
-- (visibility Supervisors) do not count. Any archive records the last two; team mode all four.
-- A source is the first that showed the agent.
CREATE TABLE session_agents (
    session_id    TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    source        TEXT NOT NULL,
    PRIMARY KEY (session_id, agent_id)
);
CREATE INDEX session_agents_agent ON session_agents (agent_id, session_id);

-- Sessions a monitored agent had that the supervisor did not see live (they began before
-- monitoring did, or monitoring was lost): 'gap' until Interaction History backfills them when
-- they end, 'intruded' when team.existing = "intrude" joined them.
CREATE TABLE team_gaps (
    session_id  TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    noticed_at  TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT
);
