'use strict';
// A Faye 1.4.3 Bayeux server as a GWS notifications endpoint, for tests/test_push_peers.py. Usage:
//
//   node faye_server.cjs '{"port": 0, "timeout": 2}'
//
// `timeout` is Faye's connect hold in seconds. Prints {"port": N} on one line once listening.
// Test hooks:
//   POST /test/publish?channel=C   body: JSON data   publish the data on channel C
//   POST /test/expire                               forget every client (Faye then answers
//                                                   "401:<clientId>:Unknown client")
//   POST /test/refuse                               from now on, /meta/connect replies carry
//                                                   advice {reconnect: "none"}
//   GET  /test/stats                                {"messages": {channel: count}, "clients": n}
const http = require('http');
const faye = require('faye');

const { port = 0, path = '/api/v2/notifications', timeout = 2 } = JSON.parse(process.argv[2] || '{}');
const bayeux = new faye.NodeAdapter({ mount: path, timeout });
const clients = new Set();
const received = {};
let refuse = false;

bayeux.addExtension({
    incoming(message, request, callback) {
        // Only what came over HTTP: the in-process publishing client has no request.
        if (request) {
            received[message.channel] = (received[message.channel] || 0) + 1;
        }
        callback(message);
    },
    outgoing(message, request, callback) {
        if (request && message.channel === '/meta/handshake' && message.successful) {
            clients.add(message.clientId);
        }
        if (refuse && message.channel === '/meta/connect') {
            message.advice = { reconnect: 'none' };
        }
        callback(message);
    },
});

function reply(response, status, body) {
    response.writeHead(status, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify(body));
}

const httpServer = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://peer');
    if (url.pathname === '/test/publish') {
        let body = '';
        request.on('data', chunk => { body += chunk; });
        request.on('end', () => {
            bayeux.getClient().publish(url.searchParams.get('channel'), JSON.parse(body));
            reply(response, 200, { published: true });
        });
        return;
    }
    if (url.pathname === '/test/expire') {
        const engine = bayeux._server._engine;
        const expired = [...clients];
        expired.forEach(clientId => {
            engine.destroyClient(clientId);
            // Answer the held connect now instead of at the end of its hold.
            engine.flushConnection(clientId);
        });
        clients.clear();
        return reply(response, 200, { expired: expired.length });
    }
    if (url.pathname === '/test/refuse') {
        refuse = true;
        return reply(response, 200, { refuse });
    }
    if (url.pathname === '/test/stats') {
        return reply(response, 200, { messages: received, clients: clients.size });
    }
    reply(response, 404, { error: 'not found' });
});

bayeux.attach(httpServer);
httpServer.listen(port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: httpServer.address().port }) + '\n');
});
