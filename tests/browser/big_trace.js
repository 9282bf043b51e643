// big_trace.js -- a large trace for the browser test: OTLP/HTTP protobuf
// request bodies, encoded with the official OpenTelemetry schema (the
// protobufjs root that @opentelemetry/otlp-proto-exporter-base ships).
'use strict';

// count spans in traceId (32 hex digits): a root, 100 children, and the
// rest as their children (99 each for 10,000), every span with one event
// and two attributes, about one in 1,000 in ERROR. Returns the request
// bodies, 2,000 spans each.
function bigTraceRequests(pbRoot, traceId, count) {
  const PB = pbRoot.opentelemetry.proto;
  const t0 = BigInt(Date.now()) * 1000000n - 60000000000n;
  const sid = (i) => Buffer.from((BigInt(i + 1) + 0x1000000000000000n)
    .toString(16).padStart(16, '0'), 'hex');
  const spans = [];
  for (let i = 0; i < count; i++) {
    let parent = null;
    if (i > 0 && i <= 100) parent = 0;
    else if (i > 100) parent = 1 + ((i - 101) % 100);
    const start = t0 + BigInt(i) * 5000000n;
    spans.push({
      traceId: Buffer.from(traceId, 'hex'),
      spanId: sid(i),
      parentSpanId: parent === null ? undefined : sid(parent),
      name: i === 0 ? 'big_root' : parent === 0 ? `batch_${i}` : `step_${i}`,
      kind: 1,
      startTimeUnixNano: String(start),
      endTimeUnixNano: String(i === 0 ? start + BigInt(count) * 5000000n :
        start + 3000000n),
      attributes: [
        { key: 'index', value: { intValue: i } },
        { key: 'note', value: { stringValue: `span number ${i}` } },
      ],
      events: [{ timeUnixNano: String(start + 1000000n), name: 'tick',
        attributes: [{ key: 'n', value: { intValue: i } }] }],
      status: i % 997 === 0 && i > 0 ? { code: 2, message: 'sampled error' } :
        {},
    });
  }
  const Req = PB.collector.trace.v1.ExportTraceServiceRequest;
  const bodies = [];
  for (let i = 0; i < spans.length; i += 2000) {
    bodies.push(Buffer.from(Req.encode(Req.fromObject({ resourceSpans: [{
      resource: { attributes: [{ key: 'service.name',
        value: { stringValue: 'big-trace' } }] },
      scopeSpans: [{ scope: { name: 'viewer-browser-test' },
        spans: spans.slice(i, i + 2000) }],
    }] })).finish()));
  }
  return bodies;
}

module.exports = { bigTraceRequests };
