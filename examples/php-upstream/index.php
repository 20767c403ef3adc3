<?php
// wsgate HTTP upstream example, plain PHP (no framework).
//
// The gateway POSTs every CALL, SUBSCRIBE and PUBLISH routed to an upstream
// as JSON, signed with a shared secret. This script checks the timestamp and
// the signature (401 otherwise) and that the request id is new (409
// otherwise: a replay), with wsgate_auth.php, then answers:
//   - call "sum":  {"result": array_sum(args)}, anonymous callers refused
//                  with error uri "app.error.auth", code 403;
//   - call "countdown": args [n] (1 to 10); when the gateway accepts a
//                  stream (the WAMP v2 caller asked for progressive
//                  results), n..1 as application/x-ndjson progress lines,
//                  then {"result": "liftoff"}; else that result alone;
//   - subscribe:   allowed, except topics containing "private" for
//                  anonymous callers;
//   - publish:     {"text": ...} events are rewritten with "by": the
//                  publisher's user identifier, others broadcast as is;
//   - unsubscribe: acknowledged;
//   - leave:       a client left several topics at once (it disconnected,
//                  or lost access to them); acknowledged.
//
// Connection events (the gateway's `events:`, path /events) are answered by
// events.php, after the same two checks.
//
// Run: WSGATE_UPSTREAM_SECRET=... php -S 127.0.0.1:8000 examples/php-upstream/index.php
// (replay markers go to WSGATE_REPLAY_DIR, default a private directory in
// the system temp dir).

declare(strict_types=1);

require __DIR__ . '/wsgate_auth.php';

// A PHP warning printed into the reply would make it invalid JSON.
ini_set('display_errors', '0');

const REPLAY_WINDOW = 300; // seconds either way, see upstream.DefaultReplayWindow

function reply(int $status, array $body): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    // An empty PHP array encodes as [], the gateway wants an object.
    echo $body === [] ? '{}' : json_encode($body, JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION);
    exit;
}

function fail(string $uri, string $desc, int $code): void
{
    reply(200, ['error' => ['uri' => $uri, 'desc' => $desc, 'code' => $code]]);
}

$secret = getenv('WSGATE_UPSTREAM_SECRET');
if ($secret === false || strlen($secret) < 16) {
    error_log('WSGATE_UPSTREAM_SECRET is not set or shorter than 16 bytes');
    reply(500, ['message' => 'upstream not configured']);
}
if (($_SERVER['REQUEST_METHOD'] ?? '') !== 'POST') {
    reply(405, ['message' => 'POST only']);
}

$body = (string) file_get_contents('php://input');
try {
    // 1. Authenticate: timestamp within REPLAY_WINDOW, then the HMAC over
    //    timestamp, request id, the signed forwarded headers and the raw
    //    body, compared in constant time. 401 otherwise.
    //    $forwarded holds the signed forwarded headers (e.g. 'cookie'):
    //    read them from there, never from $_SERVER. They are what the
    //    browser sent: the user is $req['caller'], not a header.
    [$requestId, $forwarded] = wsgate_verify_request($secret, $_SERVER, $body, time(), REPLAY_WINDOW);

    // 2. Refuse replays: a request id accepted before is refused with 409.
    //    Only after check 1, so forged requests cannot burn ids.
    wsgate_refuse_replay(wsgate_replay_dir($secret), $requestId, time(), REPLAY_WINDOW);
} catch (WsgateRefused $e) {
    reply($e->getCode(), ['error' => $e->getMessage()]);
} catch (RuntimeException $e) {
    // The id could not be recorded: refuse rather than risk a replay.
    error_log('wsgate replay store: ' . $e->getMessage());
    reply(500, ['error' => 'replay store unavailable']);
}

// 3. Connection events have their own endpoint, events.php.
if (parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) === '/events') {
    require __DIR__ . '/events.php';
    exit;
}

// 4. Decode the request.
$req = json_decode($body, true);
if (!is_array($req) || !isset($req['kind'], $req['caller']) || !is_array($req['caller'])) {
    reply(400, ['message' => 'malformed request']);
}
$caller = $req['caller'];
$anonymous = (bool) ($caller['anonymous'] ?? true);

// 5. Route on kind and method.
switch ($req['kind']) {
    case 'call':
        switch ($req['method'] ?? '') {
            case 'sum':
                if ($anonymous) {
                    fail('app.error.auth', 'You must be authenticated to use this function.', 403);
                }
                $args = $req['args'] ?? [];
                if (!is_array($args)) {
                    $args = [$args];
                }
                $args = array_filter($args, fn($v) => !is_array($v)); // as PHP 8.2 would warn
                reply(200, ['result' => array_sum($args)]);
            case 'countdown':
                $n = $req['args'][0] ?? null;
                if (!is_int($n) || $n < 1 || $n > 10) {
                    fail('app.error.bad_request', 'countdown takes [n], 1 to 10', 400);
                }
                if (!str_contains($_SERVER['HTTP_ACCEPT'] ?? '', 'application/x-ndjson')) {
                    reply(200, ['result' => 'liftoff']);
                }
                // A streamed reply: one JSON object a line, each sent at
                // once; the last one is the usual reply. A canceled call
                // closes the connection: stop when it is gone.
                header('Content-Type: application/x-ndjson');
                while (ob_get_level() > 0) {
                    ob_end_flush();
                }
                for ($i = $n; $i > 0; $i--) {
                    echo json_encode(['progress' => $i]), "\n";
                    flush();
                    if (connection_aborted()) {
                        exit;
                    }
                    usleep(20000);
                }
                echo json_encode(['result' => 'liftoff']), "\n";
                exit;
            default:
                fail('app.error.not_found', 'Unknown method ' . json_encode($req['method'] ?? null), 404);
        }
        // no break: reply() exits
    case 'subscribe':
        if ($anonymous && str_contains((string) $req['uri'], 'private')) {
            reply(200, ['allow' => false, 'reason' => 'private topics need a logged-in user']);
        }
        reply(200, ['allow' => true]);
    case 'publish':
        $event = $req['event'] ?? null;
        if (is_array($event) && array_key_exists('text', $event)) {
            $event['by'] = $caller['user_identifier'] ?? '';
            reply(200, ['event' => $event]);
        }
        reply(200, []);
    case 'unsubscribe':
        reply(200, []);
    case 'leave':
        // {"reason": "disconnect" | "revoked" | ..., "topics": [{"uri", "route",
        // "attributes"}, ...]}: one request for all the topics the client
        // left, e.g. to mark the user absent from those rooms in one query.
        // Unknown reasons may come later: treat them like "disconnect".
        $topics = $req['topics'] ?? null;
        if (!is_array($topics) || $topics === [] || !array_is_list($topics)) {
            fail('app.error.bad_request', 'leave without topics', 400);
        }
        foreach ($topics as $topic) {
            if (!is_array($topic) || !is_string($topic['uri'] ?? null) || $topic['uri'] === '') {
                fail('app.error.bad_request', 'leave topic without uri', 400);
            }
        }
        reply(200, []);
    default:
        reply(400, ['message' => 'unknown kind']);
}
