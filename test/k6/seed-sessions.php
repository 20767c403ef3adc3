<?php
/*
 * seed-sessions.php — write N logged-in Symfony sessions for the k6 load
 * scripts, into the store the gateway reads, and print the cookie list.
 *
 * The sessions are written the way a Symfony 5.4 application writes them
 * after a login: Symfony's own Session, NativeSessionStorage and save
 * handlers (NativeFileSessionHandler, PdoSessionHandler, RedisSessionHandler)
 * and a UsernamePasswordToken stored under _security_<firewall> exactly as
 * ContextListener does (helpers shared with test/php/write-session.php).
 *
 * Usage (from the repository root):
 *
 *   php test/k6/seed-sessions.php --count=200 --store=files --dir=/tmp/wsgate-k6-sessions > sessions.json
 *   php test/k6/seed-sessions.php --count=200 --store=pdo --dsn='mysql:host=127.0.0.1;dbname=app' \
 *       --db-user=app --db-password=secret --table=sessions --create-table > sessions.json
 *   php test/k6/seed-sessions.php --count=200 --store=pdo --dsn='pgsql:host=127.0.0.1;dbname=app' ... > sessions.json
 *   php test/k6/seed-sessions.php --count=200 --store=redis --redis=127.0.0.1:6379 [--redis-db=0] \
 *       [--redis-prefix=sf_s] > sessions.json
 *
 * Options (defaults in brackets):
 *   --count=N              sessions to write [100]
 *   --users=M              distinct users, session i belongs to user (i mod M) [= count]
 *   --user-prefix=S        user identifiers are S1..SM [k6user]
 *   --roles=A,B            token roles [ROLE_USER]
 *   --firewall=NAME        firewall: the token goes to _security_NAME [main]
 *   --name=COOKIE          the app's session.name, echoed in the output [PHPSESSID]
 *   --serialize-handler=H  php | php_binary | php_serialize | igbinary [php]
 *   --ttl=SECONDS          session.gc_maxlifetime: the PDO row lifetime and
 *                          the Redis key TTL; for files the gateway judges age
 *                          by session.files.gc_maxlifetime [86400]
 *   --store=files          --dir=DIR (created when missing)
 *   --store=pdo            --dsn=PDO_DSN --db-user --db-password --table [sessions]
 *                          --create-table (PdoSessionHandler::createTable(), if missing)
 *   --store=redis          --redis=HOST:PORT --redis-db=N --redis-password=P --redis-prefix [sf_s]
 *
 * Output (stdout, JSON), what the k6 scripts read with open():
 *
 *   {"cookie_name": "PHPSESSID", "store": "files",
 *    "sessions": [{"id": "8d3f…", "user": "k6user1"}, …]}
 *
 * Requirements: PHP 8.2 CLI with Debian's Symfony 5.4 packages, as
 * test/php/ (test/setup-services.sh installs them), plus php8.2-mysql,
 * php8.2-pgsql or php8.2-redis for those stores.
 *
 * Never point it at a production store: it adds sessions that log in
 * whoever presents their id.
 */

declare(strict_types=1);

require_once __DIR__.'/../php/write-session.php'; // wsgate_autoload(), wsgate_token(), wsgate_handler(); its main() does not run

use Symfony\Component\HttpFoundation\Session\Session;
use Symfony\Component\HttpFoundation\Session\Storage\Handler\RedisSessionHandler;
use Symfony\Component\HttpFoundation\Session\Storage\NativeSessionStorage;

/** Parses --key=value and --flag arguments. */
function k6seed_args(array $argv): array
{
    $out = [];
    foreach (array_slice($argv, 1) as $a) {
        if (!str_starts_with($a, '--')) {
            throw new InvalidArgumentException("unexpected argument \"$a\" (options are --key=value)");
        }
        $kv = explode('=', substr($a, 2), 2);
        $out[$kv[0]] = $kv[1] ?? true;
    }
    $known = ['count', 'users', 'user-prefix', 'roles', 'firewall', 'name', 'serialize-handler', 'ttl', 'store', 'dir',
        'dsn', 'db-user', 'db-password', 'table', 'create-table', 'redis', 'redis-db', 'redis-password', 'redis-prefix', 'help'];
    foreach (array_keys($out) as $k) {
        if (!in_array($k, $known, true)) {
            throw new InvalidArgumentException("unknown option --$k");
        }
    }

    return $out;
}

/** The save handler for the chosen store. */
function k6seed_handler(array $o, int $ttl)
{
    $store = (string) ($o['store'] ?? 'files');
    switch ($store) {
        case 'files':
            $dir = (string) ($o['dir'] ?? '');
            if ('' === $dir) {
                throw new InvalidArgumentException('--store=files needs --dir');
            }
            if (!is_dir($dir) && !mkdir($dir, 0700, true)) {
                throw new RuntimeException("cannot create $dir");
            }

            return wsgate_handler(['store' => 'files', 'dir' => $dir]);
        case 'pdo':
            return wsgate_handler([
                'store' => 'pdo',
                'dsn' => (string) ($o['dsn'] ?? ''),
                'db_user' => (string) ($o['db-user'] ?? ''),
                'db_password' => (string) ($o['db-password'] ?? ''),
                'table' => (string) ($o['table'] ?? 'sessions'),
                'create_table' => !empty($o['create-table']),
            ]);
        case 'redis':
            if (!class_exists(\Redis::class)) {
                throw new RuntimeException('--store=redis needs the redis extension (php8.2-redis)');
            }
            [$host, $port] = array_pad(explode(':', (string) ($o['redis'] ?? '127.0.0.1:6379'), 2), 2, '6379');
            $redis = new \Redis();
            $redis->connect($host, (int) $port);
            if (isset($o['redis-password'])) {
                $redis->auth((string) $o['redis-password']);
            }
            $redis->select((int) ($o['redis-db'] ?? 0));

            // Symfony's default prefix is sf_s, which is also wsgate's
            // session.redis.prefix default.
            return new RedisSessionHandler($redis, ['prefix' => (string) ($o['redis-prefix'] ?? 'sf_s'), 'ttl' => $ttl]);
    }
    throw new InvalidArgumentException('--store must be files, pdo or redis');
}

function k6seed_main(array $argv): int
{
    set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
        if ($no & (E_DEPRECATED | E_USER_DEPRECATED)) {
            return true; // Symfony 5.4 deprecations are expected noise here.
        }
        throw new ErrorException($msg, 0, $no, $file, $line);
    });
    try {
        $o = k6seed_args($argv);
        if (isset($o['help'])) {
            fwrite(STDOUT, "see the comment at the top of test/k6/seed-sessions.php\n");

            return 0;
        }
        wsgate_autoload();
        $count = (int) ($o['count'] ?? 100);
        $users = (int) ($o['users'] ?? $count);
        if ($count < 1 || $users < 1) {
            throw new InvalidArgumentException('--count and --users must be at least 1');
        }
        $prefix = (string) ($o['user-prefix'] ?? 'k6user');
        $roles = array_values(array_filter(explode(',', (string) ($o['roles'] ?? 'ROLE_USER'))));
        $firewall = (string) ($o['firewall'] ?? 'main');
        $name = (string) ($o['name'] ?? 'PHPSESSID');
        $ttl = (int) ($o['ttl'] ?? 86400);
        $handler = k6seed_handler($o, $ttl);
        $options = [
            // A CLI process: no cookie to send, and PHP must accept the ids
            // it generates itself.
            'use_cookies' => 0,
            'use_only_cookies' => 0,
            'use_trans_sid' => 0,
            'use_strict_mode' => 0,
            'cache_limiter' => '',
            'lazy_write' => 0,
            'gc_probability' => 0,
            'gc_maxlifetime' => $ttl,
            'name' => $name,
            'serialize_handler' => (string) ($o['serialize-handler'] ?? 'php'),
        ];

        $out = [];
        for ($i = 0; $i < $count; ++$i) {
            $user = $prefix.(($i % $users) + 1);
            // One storage per session: start() / save() is one request of
            // the app. PHP keeps the last id after a save, so ask it for a
            // fresh random one (its own generator, sid_length and
            // sid_bits_per_character) for every session.
            $session = new Session(new NativeSessionStorage($options, $handler));
            $session->setId(session_create_id());
            $session->start();
            $session->set('_security_'.$firewall, serialize(wsgate_token([
                'firewall' => $firewall, 'user' => $user, 'roles' => $roles,
            ])));
            $out[] = ['id' => $session->getId(), 'user' => $user];
            $session->save();
        }
        if (ini_get('session.serialize_handler') !== $options['serialize_handler']) {
            throw new RuntimeException('session.serialize_handler was not applied');
        }
        fwrite(STDOUT, json_encode([
            'cookie_name' => $name,
            'store' => (string) ($o['store'] ?? 'files'),
            'sessions' => $out,
        ], JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_PRETTY_PRINT)."\n");
        fwrite(STDERR, "seed-sessions: wrote $count sessions for $users users\n");

        return 0;
    } catch (Throwable $e) {
        fwrite(STDERR, 'seed-sessions: '.get_class($e).': '.$e->getMessage()."\n");

        return 1;
    }
}

exit(k6seed_main($argv));
