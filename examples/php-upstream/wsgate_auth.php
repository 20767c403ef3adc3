<?php
// Authenticating wsgate's requests (signature scheme v2), plain PHP 8.0+
// with the built-in hash and pcre; copy this file into your application.
//
// Every request from the gateway carries
//   X-Wsgate-Timestamp:      Unix seconds
//   X-Wsgate-Request-Id:     32 lower-case hex digits, random, new for every request
//   X-Wsgate-Signed-Headers: the forwarded handshake headers, lower case, joined by ","
//   X-Wsgate-Signature:      v2=<hex HMAC-SHA256(secret, string to sign)>
// and the string to sign is
//   "wsgate-v2\n" . timestamp . "\n" . request id . "\n" . signed headers . "\n"
//   . "<name>:<value>\n" for each listed name, in the list's order
//     (value trimmed of spaces and tabs, "" when the header is absent)
//   . raw body
//
// Two checks, both needed:
//   1. wsgate_verify_request(): timestamp within the window, then the
//      signature (constant time). Refused: 401.
//   2. wsgate_refuse_replay(): the request id was not accepted before.
//      Refused: 409. Markers live for twice the window: after that the
//      timestamp check alone refuses a replay.
//
// The signature proves the gateway sent the forwarded headers unchanged,
// not that they are true: they are what the browser sent in its handshake,
// unless a trusted proxy in front of the gateway sets them and strips the
// client's own. Read forwarded headers only from what check 1 returns,
// never from $_SERVER; take the user from the body's "caller".

declare(strict_types=1);

/** A request refused; the code is the HTTP status to answer. */
final class WsgateRefused extends RuntimeException
{
}

/**
 * Check 1: timestamp window and signature.
 *
 * @param array<string, mixed> $server $_SERVER
 * @return array{0: string, 1: array<string, string>} the request id, and the
 *         signed forwarded headers (lower-case name => value, "" when absent)
 * @throws WsgateRefused (401)
 */
function wsgate_verify_request(string $secret, array $server, string $body, int $now, int $window): array
{
    $ts = (string) ($server['HTTP_X_WSGATE_TIMESTAMP'] ?? '');
    if (!preg_match('/^[0-9]{1,19}$/D', $ts)) {
        throw new WsgateRefused('missing or malformed timestamp', 401);
    }
    if (abs($now - (int) $ts) > $window) {
        throw new WsgateRefused('stale timestamp', 401);
    }
    $id = (string) ($server['HTTP_X_WSGATE_REQUEST_ID'] ?? '');
    if (!preg_match('/^[0-9a-f]{32}$/D', $id)) {
        throw new WsgateRefused('missing or malformed request id', 401);
    }
    $list = (string) ($server['HTTP_X_WSGATE_SIGNED_HEADERS'] ?? '');
    $token = '[a-z0-9!#$%&\'*+.^_`|~-]+'; // a header name (RFC 9110 token), lower case
    if (!preg_match("/^(?:{$token}(?:,{$token})*)?$/D", $list)) {
        throw new WsgateRefused('malformed signed headers', 401);
    }
    $names = $list === '' ? [] : explode(',', $list);
    if (count($names) > 32 || count(array_unique($names)) !== count($names)) {
        throw new WsgateRefused('malformed signed headers', 401);
    }

    // "v2=<64 hex>", possibly beside entries of other versions.
    $given = null;
    $entries = explode(',', (string) ($server['HTTP_X_WSGATE_SIGNATURE'] ?? ''));
    if (count($entries) > 8) {
        throw new WsgateRefused('malformed signature', 401);
    }
    foreach ($entries as $entry) {
        if (!preg_match('/^v([0-9]{1,3})=((?:[0-9a-f]{2}){1,64})$/D', trim($entry, " \t"), $m)) {
            throw new WsgateRefused('malformed signature', 401);
        }
        if ($m[1] === '2') {
            if ($given !== null || strlen($m[2]) !== 64) {
                throw new WsgateRefused('malformed signature', 401);
            }
            $given = $m[2];
        }
    }
    if ($given === null) {
        throw new WsgateRefused('no v2 signature', 401);
    }

    $toSign = "wsgate-v2\n{$ts}\n{$id}\n{$list}\n";
    $forwarded = [];
    foreach ($names as $name) {
        // PHP names a request header HTTP_<NAME> with "-" as "_".
        $value = trim((string) ($server['HTTP_' . strtoupper(str_replace('-', '_', $name))] ?? ''), " \t");
        $toSign .= "{$name}:{$value}\n";
        $forwarded[$name] = $value;
    }
    $toSign .= $body;
    if (!hash_equals(hash_hmac('sha256', $toSign, $secret), $given)) {
        throw new WsgateRefused('bad signature', 401);
    }
    return [$id, $forwarded];
}

/**
 * Check 2: refuse a request id already accepted. Call it after check 1
 * only, so that unsigned requests cannot fill the directory or burn ids.
 *
 * One marker file per id, created with fopen mode 'x' (O_CREAT|O_EXCL):
 * atomic, so of two workers given the same request at once exactly one
 * passes. Every worker of the application must share the directory; with
 * several application hosts use a shared store instead, e.g. Redis
 * SET wsgate:req:<id> 1 NX EX <2 * window>.
 *
 * @throws WsgateRefused (409) for a replay
 * @throws RuntimeException when the id cannot be recorded (answer 500:
 *         never accept a request whose id was not recorded)
 */
function wsgate_refuse_replay(string $dir, string $id, int $now, int $window): void
{
    if (!preg_match('/^[0-9a-f]{32}$/D', $id)) { // also keeps it a plain file name
        throw new WsgateRefused('malformed request id', 401);
    }
    wsgate_sweep_replay_dir($dir, $now, 2 * $window);
    $marker = $dir . '/' . $id;
    $f = @fopen($marker, 'x');
    if ($f === false) {
        clearstatcache(true, $marker);
        if (file_exists($marker)) {
            throw new WsgateRefused('replayed request', 409);
        }
        throw new RuntimeException('cannot record the request id');
    }
    fclose($f);
}

/**
 * The directory of the replay markers: WSGATE_REPLAY_DIR, or one in the
 * system temp dir named from the secret, so that another local user
 * cannot guess it and create it first. It must be private (0700).
 *
 * @throws RuntimeException when it cannot be created or is not private
 */
function wsgate_replay_dir(string $secret): string
{
    $dir = getenv('WSGATE_REPLAY_DIR');
    if ($dir === false || $dir === '') {
        $dir = sys_get_temp_dir() . '/wsgate-replay-' . substr(hash_hmac('sha256', 'replay-dir', $secret), 0, 16);
    }
    if (!is_dir($dir) && !@mkdir($dir, 0700) && !is_dir($dir)) {
        throw new RuntimeException('cannot create the replay directory');
    }
    if (is_link($dir) || (fileperms($dir) & 0077) !== 0) {
        throw new RuntimeException('the replay directory must be a private (0700) directory, not a link');
    }
    return $dir;
}

/**
 * Removes markers older than $maxAge seconds, at most once a minute (the
 * mtime of .last-sweep says when it last ran).
 */
function wsgate_sweep_replay_dir(string $dir, int $now, int $maxAge): void
{
    $stamp = $dir . '/.last-sweep';
    $last = @filemtime($stamp);
    if ($last !== false && $now - $last < 60) {
        return;
    }
    @touch($stamp);
    foreach (scandir($dir) ?: [] as $name) {
        if (!preg_match('/^[0-9a-f]{32}$/D', $name)) {
            continue;
        }
        $mtime = @filemtime($dir . '/' . $name);
        if ($mtime !== false && $now - $mtime > $maxAge) {
            @unlink($dir . '/' . $name);
        }
    }
}
