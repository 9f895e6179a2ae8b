// The official CometD JavaScript client (npm `cometd` + `cometd-nodejs-client`), headless, as a
// reference peer for the simulator's Bayeux endpoint (tests/test_push_simulator.py).
//
// Usage: node cometd_client.mjs URL USER PASSWORD [CHANNEL ...]
//
// Handshakes with Basic credentials over long-polling only and, after every successful
// (re)handshake, subscribes to each CHANNEL again (the client forgets subscriptions on a
// re-handshake). Prints one JSON line per observation on stdout:
//   {"event":"handshake","successful":…,"reestablish":…,"clientId":…,"error":…,"advice":…}
//   {"event":"subscribe","successful":…,"subscription":…,"error":…}
//   {"event":"connect","successful":…,"error":…,"advice":…}
//   {"event":"message","channel":…,"data":…}
//   {"event":"disconnect","successful":…}
// A line "disconnect" on stdin, or the end of stdin, disconnects and exits. The client's own
// logging goes to stderr so that stdout stays one JSON object per line.

import * as readline from "node:readline";
import { adapt } from "cometd-nodejs-client";
import { CometD } from "cometd";

const [url, user, password, ...channels] = process.argv.slice(2);
if (!url || !user || password === undefined) {
    process.stderr.write("usage: node cometd_client.mjs URL USER PASSWORD [CHANNEL ...]\n");
    process.exit(2);
}

adapt();
// adapt() points console.debug at console.log; send every level to stderr instead.
for (const level of ["log", "info", "debug", "warn"]) {
    console[level] = console.error;
}

function emit(event, fields) {
    process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

const cometd = new CometD();
cometd.unregisterTransport("websocket");
cometd.configure({
    url,
    logLevel: "warn",
    requestHeaders: {
        Authorization: "Basic " + Buffer.from(`${user}:${password}`).toString("base64"),
    },
});

cometd.addListener("/meta/handshake", (reply) => {
    emit("handshake", {
        successful: reply.successful,
        reestablish: Boolean(reply.reestablish),
        clientId: reply.clientId ?? null,
        error: reply.error ?? null,
        advice: reply.advice ?? null,
    });
    if (!reply.successful) {
        return;
    }
    for (const channel of channels) {
        cometd.subscribe(
            channel,
            (message) => emit("message", { channel: message.channel, data: message.data }),
            (ack) => emit("subscribe", {
                successful: ack.successful,
                subscription: ack.subscription ?? channel,
                error: ack.error ?? null,
            }),
        );
    }
});

cometd.addListener("/meta/connect", (reply) => {
    emit("connect", {
        successful: reply.successful,
        error: reply.error ?? null,
        advice: reply.advice ?? null,
    });
});

let leaving = false;
function leave() {
    if (leaving) {
        return;
    }
    leaving = true;
    if (cometd.isDisconnected()) {
        process.exit(0);
    }
    // Exit even if the server never answers the disconnect.
    setTimeout(() => process.exit(0), 2000).unref();
    cometd.disconnect((reply) => {
        emit("disconnect", { successful: reply.successful });
        process.exit(0);
    });
}

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
    if (line.trim() === "disconnect") {
        leave();
    }
});
commands.on("close", leave);

cometd.handshake();
