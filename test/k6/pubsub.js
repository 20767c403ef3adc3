// pubsub.js — subscribe and publish: VUs share ROOMS topics
// (TOPIC_PREFIX + "k6-<n>", by default acme/channel/k6-<n> of the example
// acme.topic handler); each subscribes to its room, publishes an event every
// PUBLISH_EVERY, and measures how long every event of its room took to
// arrive and whether its own events came back.
//
//   k6 run -e WSGATE_URL=ws://127.0.0.1:8080/ -e SESSIONS=$PWD/sessions.json test/k6/pubsub.js
//
// Settings (-e): WSGATE_URL, WAMP_VERSION (1|2), WAMP_REALM, ORIGIN,
// COOKIE_NAME, SESSIONS, VUS (100), DURATION (2m), ROOMS (10),
// TOPIC_PREFIX (acme/channel/), PUBLISH_EVERY (1s), SESSION_LENGTH (1m:
// each VU reconnects after it), PAYLOAD_BYTES (100), DELIVERY_TIMEOUT (5s).
//
// Every subscriber of a room receives every event published in it, so the
// gateway delivers VUS × VUS/ROOMS events per PUBLISH_EVERY. acme.topic
// also announces each join and leave to the room ({"msg": "<conn> has
// joined <topic>"}); those are counted apart. For large rooms, point
// TOPIC_PREFIX at a route without announcements (acme/relay/ in the
// default config, handler acme.relay).
import ws from 'k6/ws';
import { check, fail } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';
import { settings, loadSessions, sessionFor, connectParams, WampClient, ms, int } from './lib/wamp.js';

const sessions = __ENV.SESSIONS ? new SharedArray('sessions', () => loadSessions(open(__ENV.SESSIONS))) : [];

const vus = int(__ENV.VUS, 100);
const rooms = Math.max(1, int(__ENV.ROOMS, 10));
const topicPrefix = __ENV.TOPIC_PREFIX || 'acme/channel/';
const publishEvery = ms(__ENV.PUBLISH_EVERY, '1s');
const sessionLength = ms(__ENV.SESSION_LENGTH, '1m');
const deliveryTimeout = ms(__ENV.DELIVERY_TIMEOUT, '5s');
const padding = 'x'.repeat(Math.max(0, int(__ENV.PAYLOAD_BYTES, 100) - 60));

// Publish to EVENT, for every event of the room (all VUs run on one
// machine's clock: run k6 from a single host).
const eventLatency = new Trend('wamp_event_latency', true);
// Whether an event this VU published came back to it within DELIVERY_TIMEOUT.
const delivered = new Rate('wamp_event_delivered');
const eventsReceived = new Counter('wamp_events_received');
const eventsPublished = new Counter('wamp_events_published');
const announcements = new Counter('wamp_announcements_received');
const cleanClose = new Rate('wamp_clean_close');

export const options = {
  scenarios: {
    pubsub: {
      executor: 'constant-vus',
      vus: vus,
      duration: __ENV.DURATION || '2m',
      gracefulStop: '15s',
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    ws_connecting: ['p(95)<' + int(__ENV.P95_CONNECT_MS, 500)],
    wamp_event_latency: ['p(95)<' + int(__ENV.P95_EVENT_MS, 250)],
    wamp_event_delivered: ['rate>0.999'],
    wamp_clean_close: ['rate>0.99'],
  },
};

export function setup() {
  if (!__ENV.SESSIONS && __ENV.EXPECT_ANONYMOUS !== '1') {
    fail('SESSIONS is not set: seed sessions with test/k6/seed-sessions.php, or set EXPECT_ANONYMOUS=1');
  }
}

export default function () {
  const session = sessionFor(sessions, __VU);
  const topic = topicPrefix + 'k6-' + (__VU % rooms);
  let closedByUs = false;
  let subscribed = false;
  let seq = 0;
  const pending = {}; // seq -> publish time, of this VU's own events

  let res;
  try {
    res = ws.connect(settings.url, connectParams(session, { script: 'pubsub' }), function (socket) {
      const w = new WampClient(socket, settings.version, settings.realm);
      const finish = () => {
        if (closedByUs) return;
        closedByUs = true;
        // Events still on their way when the session ends are not judged.
        w.goodbye();
        socket.close();
      };
      const onEvent = (ev) => {
        // acme.topic wraps what was published as {"msg": event}; its
        // join/leave announcements are {"msg": "<text>"}.
        const body = ev && typeof ev === 'object' && 'msg' in ev ? ev.msg : ev;
        if (!body || typeof body !== 'object' || body.k6 !== 1) {
          announcements.add(1);
          return;
        }
        eventsReceived.add(1);
        eventLatency.add(Date.now() - body.ts);
        if (body.vu === __VU && pending[body.seq] !== undefined) {
          delete pending[body.seq];
          delivered.add(true);
        }
      };
      const publish = () => {
        seq++;
        const now = Date.now();
        pending[seq] = now;
        w.publish(topic, { k6: 1, vu: __VU, seq: seq, ts: now, pad: padding });
        eventsPublished.add(1);
        // Judge this event after DELIVERY_TIMEOUT unless the session ends first.
        const mine = seq;
        socket.setTimeout(() => {
          if (pending[mine] !== undefined) {
            delete pending[mine];
            delivered.add(false);
          }
        }, deliveryTimeout);
      };
      w.onProtocolError = (msg) => {
        check(null, { 'no protocol error': () => false });
        console.warn('VU ' + __VU + ': ' + msg);
        finish();
      };
      w.onWelcome = () => {
        w.subscribe(topic, onEvent, () => {
          subscribed = true;
          // Spread the publishers over the interval, then publish regularly.
          socket.setTimeout(() => {
            publish();
            socket.setInterval(publish, publishEvery);
          }, Math.random() * publishEvery);
          socket.setTimeout(finish, Math.max(sessionLength, publishEvery + deliveryTimeout));
        });
      };
      socket.on('open', () => w.open());
      socket.on('message', (data) => w.handle(data));
      socket.on('close', () => cleanClose.add(closedByUs));
      socket.on('error', (e) => {
        if (!closedByUs) console.warn('VU ' + __VU + ': websocket error: ' + (e && e.error ? e.error() : e));
      });
      socket.setTimeout(() => {
        if (!subscribed) {
          check(null, { 'subscribed within 10s': () => false });
          finish();
        }
      }, 10000);
    });
  } catch (e) {
    console.warn('VU ' + __VU + ': connect failed: ' + e);
  }
  check(res, { 'handshake answered 101': (r) => r && r.status === 101 });
  check(null, { 'subscribed': () => subscribed });
}
