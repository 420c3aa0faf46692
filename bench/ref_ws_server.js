// Node `ws` reference server for the benchmark protocol (see refservers.py):
// /sub subscribers, /pub broadcasts every frame after the "PUB" marker, /echo echoes.
// Run: node ref_ws_server.js PORT
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const subscribers = new Set();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const server = http.createServer((req, res) => { res.writeHead(404).end(); });

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (path === '/sub') {
      subscribers.add(ws);
      ws.on('close', () => subscribers.delete(ws));
    } else if (path === '/pub') {
      let marker = true;
      ws.on('message', (data) => {
        if (marker) { marker = false; if (data.toString() === 'PUB') return; }
        for (const s of subscribers) s.send(data, { binary: false });
      });
    } else if (path === '/echo') {
      ws.on('message', (data) => ws.send(data, { binary: false }));
    } else {
      ws.close(1008);
    }
  });
});

server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => console.log(`LISTENING ${port}`));
process.on('SIGTERM', () => process.exit(0));
