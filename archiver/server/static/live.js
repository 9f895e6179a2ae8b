// Live updates for the web view: follow /events (SSE) and fetch the fragments the server
// renders (a live card, a conversation's new lines). No HTML is built here: the server
// escapes everything, and this file only moves its fragments into place.
"use strict";

(function () {
  const body = document.body;
  const kind = body.dataset.live;
  if (!kind || !window.EventSource) {
    return;
  }
  const status = document.querySelector("[data-status]");
  const params = new URLSearchParams({ after: body.dataset.seq || "0" });
  if (kind === "conversation") {
    params.set("session", body.dataset.session);
  }

  // One fetch in flight per key; events that arrive meanwhile ask for one more afterwards.
  const pending = new Map();
  function refresh(key, load) {
    if (pending.has(key)) {
      pending.set(key, true);
      return;
    }
    pending.set(key, false);
    load()
      .catch(function () {})
      .finally(function () {
        const again = pending.get(key);
        pending.delete(key);
        if (again) {
          refresh(key, load);
        }
      });
  }

  async function fragment(path, query) {
    const response = await fetch(path + "?" + new URLSearchParams(query), {
      credentials: "same-origin",
    });
    if (!response.ok) {
      throw new Error(path + ": " + response.status);
    }
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    return template.content;
  }

  function findCard(sessionId) {
    for (const card of document.querySelectorAll("article.card")) {
      if (card.dataset.session === sessionId) {
        return card;
      }
    }
    return null;
  }

  async function loadCard(sessionId) {
    const card = (await fragment("/live/card", { session: sessionId })).querySelector("article");
    if (!card) {
      return;
    }
    const old = findCard(sessionId);
    const place = document.querySelector(
      card.dataset.ended === "1" ? "[data-ended-list]" : "[data-active]"
    );
    if (old && old.parentElement === place) {
      old.replaceWith(card);
    } else {
      if (old) {
        old.remove();
      }
      place.prepend(card);
    }
    card.classList.add("moved");
    const count = document.querySelector("[data-count]");
    if (count) {
      count.textContent = String(document.querySelectorAll("[data-active] article.card").length);
    }
  }

  async function loadLines() {
    const chat = document.querySelector("ol.chat");
    let last = 0;
    for (const line of chat.children) {
      last = Math.max(last, Number(line.dataset.index));
    }
    const lines = await fragment("/conversation/lines", {
      session: body.dataset.session,
      after: String(last),
    });
    const seen = new Set(Array.from(chat.children, function (line) {
      return line.dataset.index;
    }));
    for (const line of Array.from(lines.children)) {
      if (!seen.has(line.dataset.index)) {
        chat.append(line);
      }
    }
  }

  async function loadHeader() {
    const header = await fragment("/conversation/header", { session: body.dataset.session });
    document.querySelector("[data-header]").replaceChildren(header);
  }

  const source = new EventSource("/events?" + params);
  source.onopen = function () {
    status.textContent = "Live: following the archive as messages are archived.";
    status.dataset.state = "live";
  };
  source.onerror = function () {
    status.textContent = "Reconnecting…";
    status.dataset.state = "reconnecting";
  };
  window.addEventListener("pagehide", function () {
    source.close();
  });
  source.onmessage = function (message) {
    const event = JSON.parse(message.data);
    if (kind === "sessions") {
      refresh(event.session_id, function () {
        return loadCard(event.session_id);
      });
    } else if (event.data && typeof event.data.index === "number") {
      refresh("lines", loadLines);
    } else {
      refresh("header", loadHeader);
    }
  };
})();
