// connect.js — connections with a session cookie: each VU takes one seeded
// Symfony session, opens a WAMP session, checks that the gateway knows the
// user, holds the connection for HOLD, closes it, and starts again.
//
//   k6 run -e WSGATE_URL=ws://127.0.0.1:8080/ -e SESSIONS=$PWD/sessions.json test/k6/connect.js
//
// Settings (-e): WSGATE_URL, WAMP_VERSION (1|2), WAMP_REALM, ORIGIN,
// COOKIE_NAME, SESSIONS (the seed-sessions.php output; unset = anonymous),
// VUS (200), RAMP (30s), STEADY (1m), HOLD (20s), VERIFY_AUTH (1: a
// sample/sum call proves the user; 0: only WELCOME), EXPECT_ANONYMOUS (0).
import ws from 'k6/ws';
import { check, fail } from 'k6';
import { SharedArray } from 'k6/data';
import { Rate, Trend } from 'k6/metrics';
import { settings, loadSessions, sessionFor, connectParams, WampClient, sumResult, ms, int } from './lib/wamp.js';

const sessions = __ENV.SESSIONS ? new SharedArray('sessions', () => loadSessions(open(__ENV.SESSIONS))) : [];

const vus = int(__ENV.VUS, 200);
const hold = ms(__ENV.HOLD, '20s');
const verifyAuth = __ENV.VERIFY_AUTH !== '0';
const expectAnonymous = __ENV.EXPECT_ANONYMOUS === '1';

// Time from the start of the handshake to WELCOME (v1: sent with the 101;
// v2: after HELLO), which includes the gateway's session store read.
const welcomeTime = new Trend('wamp_welcome_time', true);
// Whether the gateway saw the session's user (false: anonymous).
const authenticated = new Rate('wamp_authenticated');
// Whether the connection ended because the script closed it (false: the
// gateway closed it or it broke).
const cleanClose = new Rate('wamp_clean_close');

export const options = {
  scenarios: {
    connect: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || '30s', target: vus },
        { duration: __ENV.STEADY || '1m', target: vus },
        { duration: '10s', target: 0 },
      ],
      gracefulRampDown: '30s',
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    ws_connecting: ['p(95)<' + int(__ENV.P95_CONNECT_MS, 500)],
    wamp_welcome_time: ['p(95)<' + int(__ENV.P95_WELCOME_MS, 500)],
    wamp_authenticated: [expectAnonymous ? 'rate<0.01' : 'rate>0.99'],
    wamp_clean_close: ['rate>0.99'],
  },
};

export function setup() {
  if (!__ENV.SESSIONS && !expectAnonymous) {
    fail('SESSIONS is not set: seed sessions with test/k6/seed-sessions.php, or set EXPECT_ANONYMOUS=1');
  }
}

export default function () {
  const session = sessionFor(sessions, __VU);
  const started = Date.now();
  let closedByUs = false;
  let welcomed = false;

  let res;
  try {
    res = ws.connect(settings.url, connectParams(session, { script: 'connect' }), function (socket) {
      const w = new WampClient(socket, settings.version, settings.realm);
      const finish = () => {
        closedByUs = true;
        w.goodbye();
        socket.close();
      };
      w.onProtocolError = (msg) => {
        check(null, { 'no protocol error': () => false });
        console.warn('VU ' + __VU + ': ' + msg);
        finish();
      };
      w.onWelcome = (info) => {
        welcomed = true;
        welcomeTime.add(Date.now() - started);
        const holdThenClose = () => socket.setTimeout(finish, hold);
        if (settings.version === 2 && (!verifyAuth || info.anonymous)) {
          // v2's WELCOME names the user; no call is needed to know it.
          authenticated.add(!info.anonymous);
          check(info, { 'WELCOME names the expected user': (i) => expectAnonymous ? i.anonymous : !i.anonymous && (!session || i.authid === session.user) });
          return holdThenClose();
        }
        if (!verifyAuth) {
          return holdThenClose();
        }
        const args = [1, 2, __VU];
        w.call('sample/sum', args, (err, result) => {
          const ok = !err && sumResult(result, args);
          authenticated.add(ok);
          check(result, { 'sample/sum answers as for the user': () => expectAnonymous ? !err && !ok : ok });
          holdThenClose();
        });
      };
      socket.on('open', () => w.open());
      socket.on('message', (data) => w.handle(data));
      socket.on('close', () => cleanClose.add(closedByUs));
      socket.on('error', (e) => {
        if (!closedByUs) console.warn('VU ' + __VU + ': websocket error: ' + (e && e.error ? e.error() : e));
      });
      // A gateway that never welcomes us must not hold the VU forever.
      socket.setTimeout(() => {
        if (!welcomed) {
          check(null, { 'WELCOME within 10s': () => false });
          finish();
        }
      }, 10000);
    });
  } catch (e) {
    console.warn('VU ' + __VU + ': connect failed: ' + e);
  }
  check(res, { 'handshake answered 101': (r) => r && r.status === 101 });
  check(null, { 'WELCOME received': () => welcomed });
}
