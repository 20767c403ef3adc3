// WAMP v2 end-to-end client for wsgate, driven by test/wamp2_e2e_test.go.
//
//   node client.mjs <scenario> '<json options>'
//
// options: {url, realm, cookie, origin, topic, serializer,
// ...scenario-specific}; serializer is "json" (the default), "msgpack" or
// "cbor": the client then offers only wamp.2.<serializer>, with
// autobahn's serializer class (msgpack5 and cbor, autobahn's optional
// dependencies, are in package-lock.json).
// It prints one JSON object per line on stdout: progress lines
// ({"ready": ...}) the Go test may wait for, then a final
// {"result": {...}} or {"error": "..."}. Exit status 0 means the scenario
// ran to its end (the Go test checks the values), 1 means it could not.
//
// autobahn 26 uses the global WebSocket (Node 22+, or Node 20 with
// --experimental-websocket). Browsers send the session cookie with the
// handshake; here a WebSocket subclass adds Cookie and Origin headers,
// which Node's WebSocket accepts in its init object.
import autobahn from 'autobahn';
import readline from 'node:readline';

const [scenario, rawOpts] = process.argv.slice(2);
const opts = JSON.parse(rawOpts || '{}');

if (typeof globalThis.WebSocket !== 'function') {
  out({ error: 'no global WebSocket: run node >= 22 or with --experimental-websocket' });
  process.exit(1);
}
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    const headers = {};
    if (opts.cookie) headers.Cookie = opts.cookie;
    if (opts.origin) headers.Origin = opts.origin;
    super(url, { protocols, headers });
  }
};

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function errInfo(e) {
  // autobahn rejects with autobahn.Error {error, args, kwargs}.
  if (e && typeof e === 'object' && 'error' in e) {
    return { error: e.error, args: e.args, kwargs: e.kwargs };
  }
  return { error: String(e) };
}

// settle reports a promise's outcome as {ok: value} or {err: {...}};
// autobahn's Publication and Subscription objects become {id}.
async function settle(p) {
  try {
    let v = await p;
    if (v && typeof v === 'object' && v.constructor && !['Object', 'Array'].includes(v.constructor.name)) {
      v = { id: v.id };
    }
    return { ok: v === undefined ? null : v };
  } catch (e) {
    return { err: errInfo(e) };
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// waitFor resolves when pred() is true, or after ms.
async function waitFor(pred, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(10);
  return pred();
}

// serializerClasses maps opts.serializer to autobahn's class; a class
// autobahn could not load (its npm package missing) is undefined.
const serializerClasses = {
  json: autobahn.serializer.JSONSerializer,
  msgpack: autobahn.serializer.MsgpackSerializer,
  cbor: autobahn.serializer.CBORSerializer,
};

function serializers() {
  const name = opts.serializer || 'json';
  const cls = serializerClasses[name];
  if (!cls) throw new Error('autobahn has no ' + name + ' serializer (missing npm package?)');
  return [new cls()];
}

function connect() {
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url: opts.url,
      realm: opts.realm,
      max_retries: 0,
      retry_if_unreachable: false,
      serializers: serializers(),
    });
    const closed = new Promise((r) => {
      connection.onclose = (reason, details) => {
        r({ reason, details: { reason: details.reason, message: details.message } });
        reject(new Error('connection closed before open: ' + reason + ' ' + JSON.stringify(details)));
        return true; // do not retry
      };
    });
    connection.onopen = (session, details) => resolve({ connection, session, details, closed });
    connection.open();
  });
}

const scenarios = {
  // basic: the caller, subscriber and publisher paths and their errors,
  // then GOODBYE.
  async basic() {
    const { connection, session, details, closed } = await connect();
    const r = {
      session: session.id,
      authid: details.authid,
      authrole: details.authrole,
      realm: details.realm,
      protocol: connection.transport ? connection.transport.info.protocol : null,
    };
    r.sum = await settle(session.call('sample/sum', [1, 2, 3]));
    r.sumList = await settle(session.call('sample/sum', [[4, 5]]));
    r.noRoute = await settle(session.call('nowhere/x'));
    r.noMethod = await settle(session.call('sample/nope'));
    r.denied = await settle(session.call('admin/sum', [1]));

    const topic = opts.topic;
    const events = [];
    let sub = null;
    try {
      sub = await session.subscribe(topic, (args, kwargs) => events.push({ args, kwargs }));
    } catch (e) {
      r.subscribeError = errInfo(e);
    }
    r.subscribed = sub !== null;
    await waitFor(() => events.length >= 1);
    r.pubAck = await settle(session.publish(topic, ['hello v2'], {}, { acknowledge: true, exclude_me: false }));
    await waitFor(() => events.length >= 2);
    r.pubNoUser = await settle(session.publish(topic, [{ username: 'nobody-here', text: 'x' }], {}, { acknowledge: true }));
    r.pubDenied = await settle(session.publish('private/room', ['x'], {}, { acknowledge: true }));
    r.subDenied = await settle(session.subscribe('private/room', () => {}));
    r.events = events;
    if (sub) r.unsubscribed = await settle(sub.unsubscribe());
    connection.close(); // GOODBYE
    r.close = await closed;
    return r;
  },

  // listen: subscribe, report ready, wait for an event carrying
  // opts.expect, then publish opts.publish (acknowledged) and leave.
  async listen() {
    const { connection, session, closed } = await connect();
    const events = [];
    // The EVENT details' publisher identification is kept too: a
    // publisher on another replica is disclosed through the fan-out.
    await session.subscribe(opts.topic, (args, kwargs, ev) => events.push({
      args, kwargs, publisher: ev.publisher, publisher_authid: ev.publisher_authid, publisher_authrole: ev.publisher_authrole,
    }));
    out({ ready: true, session: session.id });
    const seen = () => events.some((e) => JSON.stringify(e.args).includes(opts.expect));
    const got = await waitFor(seen, 5000);
    const r = { events, gotExpected: got };
    if (opts.publish) {
      r.pubAck = await settle(session.publish(opts.topic, [opts.publish], {}, { acknowledge: true }));
    }
    // Stay until the Go side says so (stdin line or EOF), so the v1
    // client sees this session's events before the leave.
    await new Promise((res) => {
      const rl = readline.createInterface({ input: process.stdin });
      rl.on('line', () => { rl.close(); res(); });
      rl.on('close', res);
    });
    if (opts.awaitBeforeLeave) {
      await waitFor(() => events.some((e) => JSON.stringify(e.args).includes(opts.awaitBeforeLeave)), 5000);
    }
    connection.close();
    r.close = await closed;
    return r;
  },

  // advanced: the v2 advanced features wsgate announces: publisher
  // identification (a publish with disclose_me and one without, both
  // received by this session) and the session meta API.
  async advanced() {
    const { connection, session, details, closed } = await connect();
    const r = { session: session.id, authid: details.authid, brokerFeatures: details.roles.broker.features };
    const events = [];
    await session.subscribe(opts.topic, (args, kwargs, ev) => events.push({
      args, publisher: ev.publisher, publisher_authid: ev.publisher_authid, publisher_authrole: ev.publisher_authrole,
    }));
    await waitFor(() => events.length >= 1); // the join broadcast
    r.disclosed = await settle(session.publish(opts.topic, ['disclosed'], {}, { acknowledge: true, exclude_me: false, disclose_me: true }));
    r.undisclosed = await settle(session.publish(opts.topic, ['undisclosed'], {}, { acknowledge: true, exclude_me: false }));
    await waitFor(() => events.length >= 3);
    r.events = events;
    r.count = await settle(session.call('wamp.session.count'));
    r.get = await settle(session.call('wamp.session.get', [session.id]));
    connection.close();
    r.close = await closed;
    return r;
  },

  // calls: progressive call results and call canceling. opts.countdown
  // is a procedure taking [from, interval_ms] that sends from..1 as
  // progress and returns "liftoff" (acme.jobs/countdown); opts.stream, if
  // set, one whose progress comes streamed from the upstream;
  // opts.upstreamHold, if set, an upstream procedure that sends one
  // progress and then waits until its request is aborted; opts.phpStream,
  // if set, the PHP example's countdown ([n]: n..1 streamed, "liftoff").
  async calls() {
    const { connection, session, details, closed } = await connect();
    const r = { dealerFeatures: details.roles.dealer.features };
    // progressOf calls proc with receive_progress, recording progress
    // and the final outcome in the order autobahn delivers them.
    const progressOf = async (proc, args) => {
      const seq = [];
      const p = session.call(proc, args, {}, { receive_progress: true });
      // autobahn 26 delivers progress through its (when.js) promise's
      // third then() callback.
      p.then(null, null, (v) => seq.push({ progress: v }));
      seq.push({ final: await settle(p) });
      return seq;
    };
    r.progress = await progressOf(opts.countdown, [3, 20]);
    r.noProgress = await settle(session.call(opts.countdown, [2, 1]));
    if (opts.stream) r.stream = await progressOf(opts.stream, []);
    if (opts.phpStream) {
      r.phpStream = await progressOf(opts.phpStream, [3]);
      r.phpPlain = await settle(session.call(opts.phpStream, [2]));
    }
    // The CALL option timeout (ms): a call with no result in time fails
    // with wamp.error.timeout; progress in time keeps one alive.
    r.timedOut = await settle(session.call(opts.countdown, [100, 1000], {}, { timeout: 300 }));
    r.timeoutKept = await settle(session.call(opts.countdown, [6, 100], {}, { timeout: 400, receive_progress: true }));

    // cancelAfterFirst starts proc with receive_progress, cancels it
    // once its first progress arrived (so it surely runs) and reports the
    // outcome and how long the cancel took to answer.
    const cancelAfterFirst = async (proc, args, cancelOpts) => {
      const progress = [];
      const p = session.call(proc, args, {}, { receive_progress: true });
      p.then(null, null, (v) => progress.push(v));
      const outcome = settle(p);
      if (!(await waitFor(() => progress.length > 0, 10000))) return { noProgress: true, outcome: await outcome };
      const t0 = Date.now();
      if (cancelOpts === undefined) p.cancel(); else p.cancel(cancelOpts);
      const res = await outcome;
      return { progress, outcome: res, ms: Date.now() - t0 };
    };
    r.kill = await cancelAfterFirst(opts.countdown, [100, 1000], { mode: 'kill' });
    // autobahn's cancel() without a mode rejects at once; the gateway
    // must send nothing more for that call (autobahn would take it as a
    // protocol violation and close the connection).
    r.plain = await cancelAfterFirst(opts.countdown, [100, 1000]);
    if (opts.upstreamHold) {
      r.upstream = await cancelAfterFirst(opts.upstreamHold, [], { mode: 'kill' });
    }
    // The session still works after the cancels.
    await sleep(200);
    r.after = await settle(session.call(opts.countdown, [1, 1]));
    connection.close();
    r.close = await closed;
    return r;
  },

  // subscribe: the advanced profile's pattern-based subscriptions and
  // event retention. opts.subs is a list of {topic, match, get_retained}
  // (match "prefix" or "wildcard", none for exact); each event is
  // recorded with the index of its subscription, its details.topic and
  // details.retained. After {"ready"}, it publishes opts.publish, a list
  // of {topic, args, options} (acknowledged), then waits until an event's
  // args include opts.expect (at most opts.waitMs, default 5000; none
  // waits not at all) and leaves. With opts.stream each event is also
  // printed at once as {"event": ...}.
  async subscribe() {
    const { connection, session, details, closed } = await connect();
    const events = [];
    const r = { session: session.id, brokerFeatures: details.roles.broker.features, subs: [], pubs: [] };
    for (const [i, s] of (opts.subs || []).entries()) {
      const o = {};
      if (s.match) o.match = s.match;
      if (s.get_retained) o.get_retained = true;
      r.subs.push(await settle(session.subscribe(s.topic, (args, kwargs, ev) => {
        const e = { sub: i, args, topic: ev.topic, retained: ev.retained };
        events.push(e);
        if (opts.stream) out({ event: e });
      }, o)));
    }
    out({ ready: true, session: session.id, subs: r.subs });
    for (const p of opts.publish || []) {
      r.pubs.push(await settle(session.publish(p.topic, p.args, {}, { acknowledge: true, ...(p.options || {}) })));
    }
    if (opts.expect) {
      // opts.expectCount: as many events carrying it (one publication
      // reaching several subscriptions of this session comes as several
      // EVENTs, which may arrive in separate reads).
      const want = opts.expectCount || 1;
      r.gotExpected = await waitFor(() => events.filter((e) => JSON.stringify(e.args).includes(opts.expect)).length >= want, opts.waitMs || 5000);
    }
    r.events = events;
    connection.close();
    r.close = await closed;
    return r;
  },

  // presence: watch opts.topic's presence (companion topic
  // wsgate.presence/<topic>) and the subscription meta events, subscribe
  // to the topic, list its presence until opts.expectUsers are all in it
  // (other replicas' snapshots reach Redis asynchronously), publish
  // opts.publish disclosed, report ready, wait for the Go side (stdin),
  // then unsubscribe and wait for its own leave.
  async presence() {
    const { connection, session, closed } = await connect();
    const companion = 'wsgate.presence/' + opts.topic;
    const r = { session: session.id, presenceEvents: [], metaEvents: [] };
    await session.subscribe(companion, (args) => r.presenceEvents.push(args[0]));
    r.metaSub = await settle(session.subscribe('wamp.subscription.on_subscribe', (args) => r.metaEvents.push(args)));
    r.deniedCompanion = await settle(session.subscribe('wsgate.presence/' + opts.deniedTopic, () => {}));
    r.deniedList = await settle(session.call('wsgate.presence.list', [opts.deniedTopic]));
    const sub = await session.subscribe(opts.topic, () => {});
    r.subscriptionId = sub.id;
    const mine = (kind) => r.presenceEvents.some((e) => e.event === kind && e.user === opts.user);
    r.sawOwnJoin = await waitFor(() => mine('join'), 5000);
    const want = opts.expectUsers || [];
    const end = Date.now() + 10000;
    do {
      r.list = await settle(session.call('wsgate.presence.list', [opts.topic]));
      if (r.list.ok && want.every((u) => r.list.ok.users.includes(u))) break;
      await sleep(100);
    } while (Date.now() < end);
    r.pubAck = await settle(session.publish(opts.topic, [opts.publish], {}, { acknowledge: true, disclose_me: true }));
    out({ ready: true, session: session.id });
    await new Promise((res) => {
      const rl = readline.createInterface({ input: process.stdin });
      rl.on('line', () => { rl.close(); res(); });
      rl.on('close', res);
    });
    await sub.unsubscribe();
    r.sawOwnLeave = await waitFor(() => mine('leave'), 5000);
    connection.close();
    r.close = await closed;
    return r;
  },

  // hello: only connect and report the WELCOME, then leave.
  async hello() {
    const { connection, details, closed } = await connect();
    const r = { authid: details.authid, authrole: details.authrole, authextra: details.authextra, realm: details.realm };
    connection.close();
    r.close = await closed;
    return r;
  },
};

const run = scenarios[scenario];
if (!run) {
  out({ error: 'unknown scenario ' + scenario });
  process.exit(1);
}
const timer = setTimeout(() => {
  out({ error: 'scenario timed out' });
  process.exit(1);
}, opts.timeoutMs || 20000);
try {
  const result = await run();
  clearTimeout(timer);
  out({ result });
  process.exit(0);
} catch (e) {
  clearTimeout(timer);
  out({ error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
}
