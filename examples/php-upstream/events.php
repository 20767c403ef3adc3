<?php
// wsgate connection events, plain PHP: the bundle's client_connected and
// client_disconnected, received from the gateway (`events:` config).
//
// Included by index.php for POST /events once the timestamp, the signature
// and the request id are checked (401, 409 otherwise); $body is the raw
// request body, $forwarded the signed forwarded headers (on a connect event,
// those of `events.forward_headers` the browser sent, e.g. $forwarded['cookie']
// to look the PHP session up yourself; disconnect events carry none). The
// request:
//   {"event": "connect" | "disconnect",
//    "connection": {"conn_id", "wamp_session_id", "firewall", "user_identifier",
//                   "anonymous", "roles", "protocol", "remote_addr",
//                   "connected_at", "extra", "reason", "duration_ms"}}
//
//   - connect:    "banned@example.com" is refused (403, reason "banned");
//                 everybody else is accepted with
//                 extra {"plan": "gold", "greeting": "hello <user>"}, which the
//                 gateway keeps and sends back with the disconnect event;
//   - disconnect: appended as one JSON line to the file named by the
//                 EVENTS_LOG environment variable (when set), answered 204.

declare(strict_types=1);

$event = json_decode($body, true);
if (!is_array($event) || !is_array($event['connection'] ?? null)) {
    reply(400, ['message' => 'malformed event']);
}
$conn = $event['connection'];

switch ($event['event'] ?? null) {
    case 'connect':
        $user = (string) ($conn['user_identifier'] ?? '');
        if ($user === 'banned@example.com') {
            // The reason ends up in gateway logs and the refused handshake:
            // keep it short and free of anything secret.
            reply(200, ['accept' => false, 'status' => 403, 'reason' => 'banned']);
        }
        reply(200, ['accept' => true, 'extra' => ['plan' => 'gold', 'greeting' => 'hello ' . $user]]);
        // no break: reply() exits
    case 'disconnect':
        $log = getenv('EVENTS_LOG');
        if ($log !== false && $log !== '') {
            // Decode to objects, not arrays, so {} stays {} in the log.
            $line = json_encode(json_decode($body), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION);
            if ($line === false || file_put_contents($log, $line . "\n", FILE_APPEND | LOCK_EX) === false) {
                error_log('cannot append the disconnect event to EVENTS_LOG');
                reply(500, ['message' => 'cannot record the event']);
            }
        }
        // Any 2xx acknowledges a disconnect event; the body is ignored.
        http_response_code(204);
        exit;
    default:
        reply(400, ['message' => 'unknown event']);
}
