// Shared by the wsgate k6 scripts: settings from `-e NAME=value`, the seeded
// session cookies, and a small WAMP client speaking v1 (subprotocol "wamp",
// as autobahn 0.8 and gos_web_socket_client.js do) or v2 ("wamp.2.json")
// the way wsgate frames them (wamp/message.go, wamp/message2.go).
//
// The scripts use the classic k6/ws module: one blocking connection per VU
// iteration, its own event loop, socket.setTimeout/setInterval for timers.

// Settings common to every script.
export const settings = {
  // ws:// or wss:// URL of the gateway (a port-forward, a Service, an Ingress).
  url: __ENV.WSGATE_URL || 'ws://127.0.0.1:8080/',
  // 1 = WAMP v1 ("wamp"), 2 = WAMP v2 ("wamp.2.json").
  version: __ENV.WAMP_VERSION === '2' ? 2 : 1,
  // WAMP v2 realm sent in HELLO (wamp.realm; any is accepted when it is empty).
  realm: __ENV.WAMP_REALM || 'realm1',
  // Origin header to send, as a browser would; empty sends none (a
  // non-browser client, which the Origin policy does not judge).
  origin: __ENV.ORIGIN || '',
  // Cookie name, when the seed file should not decide (session.cookie).
  cookieName: __ENV.COOKIE_NAME || '',
};

// loadSessions parses the JSON that seed-sessions.php prints. Call it from
// the init context with the text of open(), inside a SharedArray so VUs
// share one copy:
//
//   const sessions = new SharedArray('sessions', () => loadSessions(open(__ENV.SESSIONS)));
//
// Each element is {name, id, user}. No file (SESSIONS unset) means every
// VU connects anonymously, which the gateway admits only with
// allow_anonymous: true.
export function loadSessions(text) {
  const seed = JSON.parse(text);
  if (!seed || !Array.isArray(seed.sessions) || seed.sessions.length === 0) {
    throw new Error('the sessions file holds no "sessions" list: produce it with test/k6/seed-sessions.php');
  }
  const name = settings.cookieName || seed.cookie_name || 'PHPSESSID';
  return seed.sessions.map((s) => ({ name: name, id: String(s.id), user: String(s.user || '') }));
}

// sessionFor picks the VU's session: VU n takes entry (n-1) mod length, so
// with at least as many sessions as VUs every VU is its own user session.
export function sessionFor(sessions, vu) {
  if (!sessions || sessions.length === 0) {
    return null;
  }
  return sessions[(vu - 1) % sessions.length];
}

// connectParams builds the k6/ws params: subprotocol, cookie, Origin, tags.
export function connectParams(session, tags) {
  const headers = {
    'Sec-WebSocket-Protocol': settings.version === 2 ? 'wamp.2.json' : 'wamp',
  };
  if (session) {
    headers.Cookie = session.name + '=' + session.id;
  }
  if (settings.origin) {
    headers.Origin = settings.origin;
  }
  return { headers: headers, tags: Object.assign({ wamp: 'v' + settings.version }, tags || {}) };
}

// WAMP v1 message types.
const V1 = { WELCOME: 0, PREFIX: 1, CALL: 2, CALLRESULT: 3, CALLERROR: 4, SUBSCRIBE: 5, UNSUBSCRIBE: 6, PUBLISH: 7, EVENT: 8 };
// WAMP v2 message types (basic profile).
const V2 = {
  HELLO: 1, WELCOME: 2, ABORT: 3, GOODBYE: 6, ERROR: 8, PUBLISH: 16, PUBLISHED: 17,
  SUBSCRIBE: 32, SUBSCRIBED: 33, UNSUBSCRIBE: 34, UNSUBSCRIBED: 35, EVENT: 36, CALL: 48, RESULT: 50,
};

// WampClient drives one WAMP session over a k6/ws socket. Wire it up in the
// ws.connect callback:
//
//   const w = new WampClient(socket, settings.version, settings.realm);
//   socket.on('open', () => w.open());
//   socket.on('message', (data) => w.handle(data));
//   w.onWelcome = (info) => { ... };
//
// info is {sessionId, anonymous, authid, raw}; for v1 anonymous and authid
// are unknown (null): WELCOME [0, sessionId, 1, "wsgate/<version>"] says
// nothing about the user, so scripts check authentication with a call.
export class WampClient {
  constructor(socket, version, realm) {
    this.socket = socket;
    this.version = version;
    this.realm = realm;
    this.nextId = 1;
    this.calls = {}; // request/call id -> callback(err, result)
    this.pendingSubs = {}; // v2 request id -> {topic, onEvent, onSubscribed}
    this.subsById = {}; // v2 subscription id -> [onEvent]
    this.subsByTopic = {}; // v1 topic -> onEvent
    this.welcomed = false;
    this.sessionId = null;
    this.onWelcome = null; // function(info)
    this.onProtocolError = null; // function(message)
  }

  // open starts the session: v2 sends HELLO; v1 waits for the WELCOME the
  // gateway sends right after the upgrade.
  open() {
    if (this.version === 2) {
      this.send([V2.HELLO, this.realm, { roles: { caller: {}, publisher: {}, subscriber: {} } }]);
    }
  }

  send(msg) {
    this.socket.send(JSON.stringify(msg));
  }

  id() {
    return this.nextId++;
  }

  // call sends a CALL; cb(err, result) gets the CALLRESULT's result (v1) or
  // RESULT's first positional argument (v2), or err = {uri, desc, details}.
  call(uri, args, cb) {
    const id = this.id();
    this.calls[id] = cb;
    if (this.version === 2) {
      this.send([V2.CALL, id, {}, uri, args]);
    } else {
      // Ratchet's rule: a single array argument is the params list.
      this.send([V1.CALL, 'c' + id, uri, args]);
    }
  }

  // subscribe sends SUBSCRIBE; onEvent(payload) gets every EVENT of the
  // topic. onSubscribed() runs on SUBSCRIBED (v2); v1 has no
  // acknowledgement, so it runs at once.
  subscribe(topic, onEvent, onSubscribed) {
    if (this.version === 2) {
      const id = this.id();
      this.pendingSubs[id] = { topic: topic, onEvent: onEvent, onSubscribed: onSubscribed };
      this.send([V2.SUBSCRIBE, id, {}, topic]);
      return;
    }
    this.subsByTopic[topic] = onEvent;
    this.send([V1.SUBSCRIBE, topic]);
    if (onSubscribed) {
      onSubscribed();
    }
  }

  // publish sends PUBLISH with the publisher included among the receivers:
  // v1's default, v2's exclude_me: false (v2's default excludes it).
  publish(topic, event) {
    if (this.version === 2) {
      this.send([V2.PUBLISH, this.id(), { exclude_me: false }, topic, [event]]);
    } else {
      this.send([V1.PUBLISH, topic, event]);
    }
  }

  // goodbye ends a v2 session politely; v1 has nothing of the kind.
  goodbye() {
    if (this.version === 2 && this.welcomed) {
      this.send([V2.GOODBYE, {}, 'wamp.close.close_realm']);
    }
  }

  handle(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return this.protocolError('not JSON: ' + String(data).slice(0, 80));
    }
    if (!Array.isArray(m) || typeof m[0] !== 'number') {
      return this.protocolError('not a WAMP message: ' + String(data).slice(0, 80));
    }
    return this.version === 2 ? this.handleV2(m) : this.handleV1(m);
  }

  handleV1(m) {
    switch (m[0]) {
      case V1.WELCOME: // [0, sessionId, 1, serverIdent]
        this.welcomed = true;
        this.sessionId = m[1];
        if (this.onWelcome) this.onWelcome({ sessionId: m[1], anonymous: null, authid: null, raw: m });
        return;
      case V1.CALLRESULT: // [3, callId, result]
        return this.finish(m[1], null, m[2]);
      case V1.CALLERROR: // [4, callId, errorUri, desc, details?]
        return this.finish(m[1], { uri: m[2], desc: m[3], details: m[4] }, null);
      case V1.EVENT: { // [8, topic, event]
        const cb = this.subsByTopic[m[1]];
        if (cb) cb(m[2]);
        return;
      }
      default:
        return this.protocolError('unexpected v1 message type ' + m[0]);
    }
  }

  handleV2(m) {
    switch (m[0]) {
      case V2.WELCOME: { // [2, session, details]
        const d = m[2] || {};
        const extra = d.authextra || {};
        this.welcomed = true;
        this.sessionId = m[1];
        if (this.onWelcome) {
          this.onWelcome({ sessionId: m[1], anonymous: extra.anonymous === true, authid: d.authid, raw: m });
        }
        return;
      }
      case V2.ABORT: // [3, details, reason]
        return this.protocolError('ABORT ' + m[2]);
      case V2.RESULT: // [50, request, details, [result]]
        return this.finish(m[1], null, Array.isArray(m[3]) ? m[3][0] : null);
      case V2.ERROR: { // [8, requestType, request, details, uri, [desc], kwargs]
        const err = { uri: m[4], desc: Array.isArray(m[5]) ? m[5][0] : '', details: m[6] };
        if (m[1] === V2.SUBSCRIBE) {
          const p = this.pendingSubs[m[2]];
          delete this.pendingSubs[m[2]];
          return this.protocolError('SUBSCRIBE ' + (p ? p.topic : '') + ' refused: ' + err.uri);
        }
        return this.finish(m[2], err, null);
      }
      case V2.SUBSCRIBED: { // [33, request, subscription]
        const p = this.pendingSubs[m[1]];
        delete this.pendingSubs[m[1]];
        if (!p) return;
        (this.subsById[m[2]] = this.subsById[m[2]] || []).push(p.onEvent);
        if (p.onSubscribed) p.onSubscribed();
        return;
      }
      case V2.EVENT: { // [36, subscription, publication, details, [event]]
        const cbs = this.subsById[m[1]] || [];
        const ev = Array.isArray(m[4]) ? m[4][0] : null;
        for (let i = 0; i < cbs.length; i++) cbs[i](ev);
        return;
      }
      case V2.PUBLISHED:
      case V2.UNSUBSCRIBED:
      case V2.GOODBYE:
        return;
      default:
        return this.protocolError('unexpected v2 message type ' + m[0]);
    }
  }

  finish(callId, err, result) {
    const key = typeof callId === 'string' && callId.charAt(0) === 'c' ? callId.slice(1) : callId;
    const cb = this.calls[key];
    if (!cb) return;
    delete this.calls[key];
    cb(err, result);
  }

  protocolError(msg) {
    if (this.onProtocolError) this.onProtocolError(msg);
  }
}

// sumResult reports whether an acme.rpc sample/sum answer is the sum of
// args, i.e. the caller was authenticated: anonymous callers get
// {"error": true, "msg": "You must be authenticated ..."} instead.
export function sumResult(result, args) {
  let want = 0;
  for (let i = 0; i < args.length; i++) want += args[i];
  return result !== null && typeof result === 'object' && result.result === want;
}

// ms returns a duration setting in milliseconds: "30s", "2m", "500ms" or a
// plain number of seconds.
export function ms(value, fallback) {
  const v = String(value === undefined || value === '' ? fallback : value);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v);
  if (!m) throw new Error('bad duration "' + v + '" (use 500ms, 30s, 2m or seconds)');
  const n = parseFloat(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60000 : n * 1000;
}

// int returns an integer setting.
export function int(value, fallback) {
  if (value === undefined || value === '') return fallback;
  const n = parseInt(value, 10);
  if (isNaN(n)) throw new Error('bad number "' + value + '"');
  return n;
}
