'use strict';
// The CometD project's own Node server (cometd-nodejs-server) as a GWS notifications endpoint,
// for tests/test_push_peers.py. Usage:
//
//   node cometd_server.cjs '{"port": 0, "timeout": 2000, "maxInterval": 3000}'
//
// Every key but `port` and `path` is a CometD server option (timeout, maxInterval,
// multiSessionInterval, browserCookieDomain, ...). Prints {"port": N} on one line once listening.
// Test hooks:
//   POST /test/publish?channel=C   body: JSON data   publish the data on channel C
//   POST /test/duplicate-connect                    a second /meta/connect for every session,
//                                                   sent as its browser would (its cookie), so
//                                                   the server cancels the held one with HTTP 500
//   GET  /test/stats                                {"messages": {channel: count}, "sessions": n}
const http = require('http');
const cometd = require('cometd-nodejs-server');

const { port = 0, path = '/api/v2/notifications', ...options } = JSON.parse(process.argv[2] || '{}');
const cometdServer = cometd.createCometDServer(options);
const sessions = new Set();
const received = {};

cometdServer.addListener('sessionAdded', session => {
    sessions.add(session);
    session.addListener('removed', () => sessions.delete(session));
});

function readBody(request, callback) {
    let body = '';
    request.on('data', chunk => { body += chunk; });
    request.on('end', () => callback(body));
}

function reply(response, status, body) {
    response.writeHead(status, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify(body));
}

function duplicateConnect(session, address) {
    const body = JSON.stringify([{
        channel: '/meta/connect', clientId: session.id, connectionType: 'long-polling', id: 'duplicate',
    }]);
    const request = http.request({
        host: address.address, port: address.port, path, method: 'POST',
        headers: {
            'Content-Type': 'application/json',
            Cookie: `BAYEUX_BROWSER=${session._browserId}`,
        },
    }, response => response.resume());
    // The duplicate is itself cancelled when the real client connects again; nobody waits for it.
    request.on('error', () => {});
    request.end(body);
}

const httpServer = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://peer');
    if (url.pathname.startsWith(path)) {
        // Read the body here to count what arrives; cometd-nodejs-server takes a parsed body as-is.
        return readBody(request, body => {
            let messages;
            try {
                messages = JSON.parse(body);
            } catch (failure) {
                return reply(response, 400, { error: 'bad json' });
            }
            [].concat(messages).forEach(message => {
                received[message.channel] = (received[message.channel] || 0) + 1;
            });
            request.body = messages;
            cometdServer.handle(request, response);
        });
    }
    if (url.pathname === '/test/publish') {
        return readBody(request, body => {
            cometdServer.createServerChannel(url.searchParams.get('channel')).publish(null, JSON.parse(body));
            reply(response, 200, { published: true });
        });
    }
    if (url.pathname === '/test/duplicate-connect') {
        sessions.forEach(session => duplicateConnect(session, httpServer.address()));
        return reply(response, 200, { sessions: sessions.size });
    }
    if (url.pathname === '/test/stats') {
        return reply(response, 200, { messages: received, sessions: sessions.size });
    }
    reply(response, 404, { error: 'not found' });
});

httpServer.listen(port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: httpServer.address().port }) + '\n');
});
