// rpc.js — remote procedure calls: each VU keeps a WAMP session and calls
// RPC_URI (sample/sum of the example acme.rpc handler) in a closed loop,
// PAUSE between an answer and the next call, and checks every answer.
//
//   k6 run -e WSGATE_URL=ws://127.0.0.1:8080/ -e SESSIONS=$PWD/sessions.json test/k6/rpc.js
//
// Settings (-e): WSGATE_URL, WAMP_VERSION (1|2), WAMP_REALM, ORIGIN,
// COOKIE_NAME, SESSIONS, VUS (100), DURATION (2m), PAUSE (100ms),
// SESSION_LENGTH (1m: each VU reconnects after it), CALL_TIMEOUT (5s),
// RPC_URI (sample/sum). With another RPC_URI the answer is only checked to
// be a result, not an error; sample/sum must return the sum of [a, b, c],
// which acme.rpc does for authenticated callers only.
import ws from 'k6/ws';
import { check, fail } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';
import { settings, loadSessions, sessionFor, connectParams, WampClient, sumResult, ms, int } from './lib/wamp.js';

const sessions = __ENV.SESSIONS ? new SharedArray('sessions', () => loadSessions(open(__ENV.SESSIONS))) : [];

const vus = int(__ENV.VUS, 100);
const pause = ms(__ENV.PAUSE, '100ms');
const sessionLength = ms(__ENV.SESSION_LENGTH, '1m');
const callTimeout = ms(__ENV.CALL_TIMEOUT, '5s');
const rpcURI = __ENV.RPC_URI || 'sample/sum';

// CALL written to CALLRESULT/RESULT read.
const rpcDuration = new Trend('wamp_rpc_duration', true);
// Whether a call got the expected answer in time.
const rpcOK = new Rate('wamp_rpc_ok');
const rpcErrors = new Counter('wamp_rpc_errors');
const cleanClose = new Rate('wamp_clean_close');

export const options = {
  scenarios: {
    rpc: {
      executor: 'constant-vus',
      vus: vus,
      duration: __ENV.DURATION || '2m',
      gracefulStop: '15s',
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    ws_connecting: ['p(95)<' + int(__ENV.P95_CONNECT_MS, 500)],
    wamp_rpc_duration: ['p(95)<' + int(__ENV.P95_RPC_MS, 100)],
    wamp_rpc_ok: ['rate>0.999'],
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
  let closedByUs = false;
  let welcomed = false;
  let calls = 0;

  let res;
  try {
    res = ws.connect(settings.url, connectParams(session, { script: 'rpc' }), function (socket) {
      const w = new WampClient(socket, settings.version, settings.realm);
      let ending = false;
      const finish = () => {
        if (closedByUs) return;
        closedByUs = true;
        w.goodbye();
        socket.close();
      };
      const next = () => {
        if (ending) return finish();
        const args = [calls, __VU, Math.floor(Math.random() * 1000)];
        const mine = ++calls;
        let answered = false;
        const sent = Date.now();
        w.call(rpcURI, args, (err, result) => {
          answered = true;
          rpcDuration.add(Date.now() - sent);
          const ok = !err && (rpcURI === 'sample/sum' ? sumResult(result, args) : result !== null);
          rpcOK.add(ok);
          if (!ok) {
            rpcErrors.add(1);
            if (mine <= 3) console.warn('VU ' + __VU + ': unexpected answer ' + JSON.stringify(err || result));
          }
          check(result, { 'call answered with the expected result': () => ok });
          socket.setTimeout(next, pause);
        });
        socket.setTimeout(() => {
          if (!answered) {
            rpcOK.add(false);
            check(null, { 'call answered within CALL_TIMEOUT': () => false });
            finish();
          }
        }, callTimeout);
      };
      w.onProtocolError = (msg) => {
        check(null, { 'no protocol error': () => false });
        console.warn('VU ' + __VU + ': ' + msg);
        finish();
      };
      w.onWelcome = () => {
        welcomed = true;
        // After SESSION_LENGTH, the call in flight finishes, then the VU
        // closes and reconnects.
        socket.setTimeout(() => {
          ending = true;
        }, sessionLength);
        next();
      };
      socket.on('open', () => w.open());
      socket.on('message', (data) => w.handle(data));
      socket.on('close', () => cleanClose.add(closedByUs));
      socket.on('error', (e) => {
        if (!closedByUs) console.warn('VU ' + __VU + ': websocket error: ' + (e && e.error ? e.error() : e));
      });
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
