#!/usr/bin/env node
// sse_read.js -- read COUNT events from a Server-Sent Events URL, print
// "ID TRACE_ID SPAN_ID" per event, then disconnect. Exits 1 if the stream
// ends or 20 s pass first.
//
//   node sse_read.js URL COUNT [LAST_EVENT_ID]
'use strict';
const http = require('http');

const [url, countText, lastId] = process.argv.slice(2);
const count = Number(countText);
const headers = lastId !== undefined ? { 'Last-Event-ID': lastId } : {};
setTimeout(() => { console.error(`sse_read: only ${seen} of ${count} events in 20 s`); process.exit(1); }, 20000);
let seen = 0;
let buf = '';
const req = http.get(url, { headers }, (res) => {
  if (res.statusCode !== 200) { console.error(`sse_read: status ${res.statusCode}`); process.exit(1); }
  if (!/^text\/event-stream/.test(res.headers['content-type'] || '')) { console.error('sse_read: not text/event-stream'); process.exit(1); }
  if (count === 0) process.exit(0);
  res.setEncoding('utf8');
  res.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let id = null, event = null, data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (event !== 'span') continue;
      const j = JSON.parse(data);
      console.log(`${id} ${j.trace_id} ${j.span.span_id}`);
      if (++seen === count) { req.destroy(); process.exit(0); }
    }
  });
  res.on('end', () => { console.error(`sse_read: stream ended after ${seen} events`); process.exit(1); });
});
req.on('error', (e) => { console.error(`sse_read: ${e.message}`); process.exit(1); });
