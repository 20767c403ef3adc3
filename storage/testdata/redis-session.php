<?php
/*
 * redis-session.php — write or destroy ONE PHP session in Redis the way a
 * Symfony 5.4 app does, so that wsgate's Redis store tests read (and see the
 * logout of) sessions produced by real PHP.
 *
 * Usage: php storage/testdata/redis-session.php '<json>'
 * prints {"id":"<session id>","key":"<redis key>"}.
 *
 * Input fields (besides those of test/php/write-session.php it reuses for the
 * security token: user, roles, firewall, token, user_class, ttl, id, name,
 * serialize_handler):
 *   handler   "symfony": Symfony's RedisSessionHandler over a phpredis \Redis
 *             (key prefix option "prefix", default Symfony's "sf_s");
 *             "native": phpredis' own session.save_handler=redis (key
 *             "PHPREDIS_SESSION:<id>"), through Symfony's NativeSessionStorage
 *   host, port  Redis server (default 127.0.0.1:6379)
 *   prefix    symfony: RedisSessionHandler "prefix" option;
 *             native: the "prefix" of session.save_path
 *   action    "write" (default) or "logout": start the session with "id" and
 *             call Session::invalidate(), as Symfony's logout does (the old
 *             session is destroyed, i.e. its key deleted)
 *
 * Requires php8.2-redis and Debian's Symfony 5.4 packages.
 */

declare(strict_types=1);

require_once __DIR__.'/../../test/php/write-session.php';

use Symfony\Component\HttpFoundation\Session\Session;
use Symfony\Component\HttpFoundation\Session\Storage\Handler\RedisSessionHandler;
use Symfony\Component\HttpFoundation\Session\Storage\NativeSessionStorage;

function wsgate_redis_main(array $argv): int
{
    set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
        if ($no & (E_DEPRECATED | E_USER_DEPRECATED)) {
            return true;
        }
        throw new ErrorException($msg, 0, $no, $file, $line);
    });
    try {
        if (2 !== count($argv)) {
            throw new InvalidArgumentException('usage: php redis-session.php \'<json>\'');
        }
        $in = json_decode($argv[1], true, 64, JSON_THROW_ON_ERROR);
        wsgate_autoload();
        if (!extension_loaded('redis')) {
            throw new RuntimeException('php-redis extension missing');
        }
        $host = (string) ($in['host'] ?? '127.0.0.1');
        $port = (int) ($in['port'] ?? 6379);
        $ttl = (int) ($in['ttl'] ?? 1440);
        $options = [
            'use_cookies' => 0,
            'use_only_cookies' => 0,
            'use_trans_sid' => 0,
            'use_strict_mode' => 0,
            'cache_limiter' => '',
            'lazy_write' => 0,
            'gc_probability' => 0,
            'gc_maxlifetime' => $ttl,
            'name' => (string) ($in['name'] ?? 'PHPSESSID'),
            'serialize_handler' => (string) ($in['serialize_handler'] ?? 'php'),
        ];
        switch ($in['handler'] ?? 'symfony') {
            case 'symfony':
                $redis = new Redis();
                $redis->connect($host, $port, 2.0);
                $prefix = (string) ($in['prefix'] ?? 'sf_s');
                $handler = new RedisSessionHandler($redis, ['prefix' => $prefix, 'ttl' => $ttl]);
                $storage = new NativeSessionStorage($options, $handler);
                break;
            case 'native':
                $prefix = (string) ($in['prefix'] ?? 'PHPREDIS_SESSION:');
                // NativeSessionStorage has no option for these: set them
                // before it wraps PHP's current handler in \SessionHandler.
                ini_set('session.save_handler', 'redis');
                ini_set('session.save_path', sprintf('tcp://%s:%d?prefix=%s', $host, $port, rawurlencode($prefix)));
                $storage = new NativeSessionStorage($options, null);
                break;
            default:
                throw new InvalidArgumentException('"handler" must be symfony or native');
        }
        $session = new Session($storage);
        if (!empty($in['id'])) {
            $session->setId((string) $in['id']);
        }
        $session->start();
        $id = $session->getId();
        if ('logout' === ($in['action'] ?? 'write')) {
            // Symfony's SessionLogoutListener: invalidate() destroys the
            // old session and continues under a new id.
            $session->invalidate();
            $session->save();
        } else {
            $session->set('_security_'.($in['firewall'] ?? 'main'), serialize(wsgate_token([
                'firewall' => $in['firewall'] ?? 'main',
                'user' => $in['user'] ?? 'alice',
                'roles' => $in['roles'] ?? ['ROLE_USER'],
                'token' => $in['token'] ?? 'username_password',
                'user_class' => $in['user_class'] ?? 'in_memory',
            ])));
            $session->save();
        }
        fwrite(STDOUT, json_encode(['id' => $id, 'key' => $prefix.$id], JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES)."\n");

        return 0;
    } catch (Throwable $e) {
        fwrite(STDERR, 'redis-session: '.get_class($e).': '.$e->getMessage()."\n");

        return 1;
    }
}

exit(wsgate_redis_main($argv));
