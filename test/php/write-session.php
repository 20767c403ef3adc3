<?php
/*
 * write-session.php — write ONE PHP session the way a Symfony 5.4 app does,
 * through Symfony's own session classes and save handlers, so that wsgate's
 * tests read bytes produced by real PHP rather than by a Go imitation.
 *
 * Usage (one JSON argument, result JSON on stdout, errors on stderr + exit 1):
 *
 *   php test/php/write-session.php '{"store":"files","dir":"/tmp/x","user":"bob","roles":["ROLE_USER"],"firewall":"main"}'
 *   php test/php/write-session.php '{"store":"pdo","dsn":"mysql:host=127.0.0.1;dbname=test","db_user":"root","db_password":"","table":"t1","create_table":true,"user":"alice","roles":["ROLE_USER","ROLE_ADMIN"],"firewall":"main","ttl":1440}'
 *
 *   php test/php/write-session.php '{"store":"memcached","host":"127.0.0.1","port":11211,"compression_type":"zlib","user":"alice","roles":["ROLE_USER"]}'
 *
 * prints {"id":"<session id>","name":"<session cookie name>"}, and for the
 * memcached stores also "key" (the memcached key the session went to).
 *
 * Requires PHP 8.2 CLI and Debian's Symfony 5.4 packages under
 * /usr/share/php/Symfony (php-symfony-http-foundation, php-symfony-security-core,
 * php-symfony-security-http for post_authentication tokens) and, for
 * "store":"pdo" with MySQL/MariaDB, php8.2-mysql; for the memcached stores,
 * php8.2-memcached (php-memcached 3.x over libmemcached).
 *
 * Input fields:
 *   store            "files" (NativeFileSessionHandler), "pdo" (PdoSessionHandler),
 *                    "memcached" (MemcachedSessionHandler over a \Memcached
 *                    client: key prefix+id, value through php-memcached's
 *                    value encoding, compressed from 2000 bytes on) or
 *                    "memcached_native" (php-memcached's own
 *                    session.save_handler=memcached: key
 *                    memcached.sess_prefix+id, raw value)
 *   host, port       memcached stores: the server (default 127.0.0.1:11211)
 *   prefix           memcached: MemcachedSessionHandler's "prefix" option
 *                    (default Symfony's "sf2s"); memcached_native: the ini
 *                    memcached.sess_prefix (default "memc.sess.key.")
 *   compression_type memcached: the ini memcached.compression_type (fastlz,
 *                    zlib; zstd where the extension was built with it)
 *   compression      memcached: \Memcached::OPT_COMPRESSION (default true)
 *   dir              files: save directory (created if missing)
 *   dsn, db_user, db_password, table, create_table
 *                    pdo: PDO DSN, credentials, table (default "sessions"),
 *                    create_table=true runs PdoSessionHandler::createTable()
 *                    (Symfony's real schema); "already exists" is ignored
 *   ttl              session.gc_maxlifetime in seconds (PdoSessionHandler
 *                    stores it as the row lifetime)
 *   name             session cookie name (default PHPSESSID)
 *   id               session id to use (default: PHP generates one)
 *   serialize_handler  session.serialize_handler: php (default), php_binary,
 *                    php_serialize, igbinary (needs the igbinary extension)
 *   user             user identifier; null = anonymous visitor: no security
 *                    token is stored, only an ordinary attribute
 *   roles            token roles (list of strings)
 *   firewall         firewall (context) name; the token goes to _security_<firewall>
 *   token            username_password (default), anonymous, post_authentication,
 *                    remember_me, pre_authenticated, switch_user
 *   user_class       in_memory (default: Symfony's InMemoryUser), legacy_user
 *                    (Symfony's deprecated User), string (the plain-string
 *                    user AbstractToken::setUser() accepts), entity (an
 *                    application entity App\Entity\Customer whose login is
 *                    its private $email), entity_username_email (an entity
 *                    App\Entity\Member with both $username and $email whose
 *                    login is the e-mail) or serializable_entity (an entity
 *                    implementing \Serializable the way Symfony <= 4 docs
 *                    taught: serialize([$this->id, $this->username, ...]))
 *   tokens           list of {firewall,user,roles,token,user_class} objects:
 *                    several firewalls in one session (replaces the single
 *                    firewall/user/roles/token/user_class fields)
 *   attributes_before, attributes_after
 *                    objects of extra AttributeBag attributes set before and
 *                    after the security tokens
 *   flashes          object type => [messages] added to the FlashBag
 *
 * Tokens are stored exactly as Symfony's ContextListener::onKernelResponse
 * does: $session->set('_security_'.$firewall, serialize($token)).
 */

declare(strict_types=1);

use Symfony\Component\HttpFoundation\Session\Session;
use Symfony\Component\HttpFoundation\Session\Storage\Handler\MemcachedSessionHandler;
use Symfony\Component\HttpFoundation\Session\Storage\Handler\NativeFileSessionHandler;
use Symfony\Component\HttpFoundation\Session\Storage\Handler\PdoSessionHandler;
use Symfony\Component\HttpFoundation\Session\Storage\NativeSessionStorage;
use Symfony\Component\Security\Core\Authentication\Token\AnonymousToken;
use Symfony\Component\Security\Core\Authentication\Token\PreAuthenticatedToken;
use Symfony\Component\Security\Core\Authentication\Token\RememberMeToken;
use Symfony\Component\Security\Core\Authentication\Token\SwitchUserToken;
use Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken;
use Symfony\Component\Security\Core\User\InMemoryUser;

const WSGATE_SYMFONY = '/usr/share/php/Symfony/Component';

/**
 * Loads Symfony's autoloaders; Security/Http is optional because only the
 * post_authentication token needs it.
 */
function wsgate_autoload(): void
{
    foreach (['HttpFoundation', 'Security/Core'] as $c) {
        $f = WSGATE_SYMFONY.'/'.$c.'/autoload.php';
        if (!is_file($f)) {
            throw new RuntimeException("Symfony component missing: $f (install php-symfony-*)");
        }
        require_once $f;
    }
    $http = WSGATE_SYMFONY.'/Security/Http/autoload.php';
    if (is_file($http)) {
        require_once $http;
    }
}

/** Application user classes as a Symfony app defines them. */
function wsgate_app_classes(): void
{
    if (class_exists('App\\Entity\\Customer', false)) {
        return;
    }
    eval(<<<'PHP'
        namespace App\Entity;

        use Symfony\Component\Security\Core\User\UserInterface;

        class Customer implements UserInterface
        {
            private $id = 4711;
            private $email;
            private $roles;
            public function __construct(string $email, array $roles) { $this->email = $email; $this->roles = $roles; }
            public function getUserIdentifier(): string { return $this->email; }
            public function getUsername(): string { return $this->email; }
            public function getRoles(): array { return $this->roles; }
            public function getPassword(): ?string { return null; }
            public function getSalt(): ?string { return null; }
            public function eraseCredentials() {}
        }

        // Both a username and an e-mail, and the login is the e-mail: the
        // entity a property guess gets wrong (issue 17).
        class Member implements UserInterface
        {
            private $id = 815;
            private $username;
            private $email;
            private $roles;
            public function __construct(string $email, array $roles) { $this->email = $email; $this->username = 'nick-'.strstr($email, '@', true); $this->roles = $roles; }
            public function getUserIdentifier(): string { return $this->email; }
            public function getUsername(): string { return $this->username; }
            public function getRoles(): array { return $this->roles; }
            public function getPassword(): ?string { return null; }
            public function getSalt(): ?string { return null; }
            public function eraseCredentials() {}
        }

        class SerializableUser implements UserInterface, \Serializable
        {
            private $id = 42;
            private $username;
            private $password = '$2y$04$hash';
            private $roles;
            public function __construct(string $username, array $roles) { $this->username = $username; $this->roles = $roles; }
            public function getUserIdentifier(): string { return $this->username; }
            public function getUsername(): string { return $this->username; }
            public function getRoles(): array { return $this->roles; }
            public function getPassword(): ?string { return $this->password; }
            public function getSalt(): ?string { return null; }
            public function eraseCredentials() {}
            public function serialize() { return serialize([$this->id, $this->username, $this->password]); }
            public function unserialize($data) { [$this->id, $this->username, $this->password] = unserialize($data); }
        }
        PHP);
}

/** Builds the user a token holds. */
function wsgate_user(string $id, array $roles, string $userClass)
{
    wsgate_app_classes();
    switch ($userClass) {
        case 'legacy_user':
            return new \Symfony\Component\Security\Core\User\User($id, 'secret-hash', $roles);
        case 'entity':
            return new \App\Entity\Customer($id, $roles);
        case 'serializable_entity':
            return new \App\Entity\SerializableUser($id, $roles);
        case 'entity_username_email':
            return new \App\Entity\Member($id, $roles);
        case 'in_memory':
            // A password hash is what a real provider loads; User::eraseCredentials()
            // is a no-op, so it really ends up in the session.
            return new InMemoryUser($id, '$2y$04$wsgatefixturehashwsgatefixturehashwsgatefixtureha', $roles);
        case 'string':
            return $id;
    }
    throw new InvalidArgumentException("unknown user_class \"$userClass\"");
}

/** Builds the security token for one firewall as the Symfony authenticators do. */
function wsgate_token(array $t)
{
    $firewall = (string) ($t['firewall'] ?? 'main');
    $roles = array_values(array_map('strval', $t['roles'] ?? []));
    $kind = $t['token'] ?? 'username_password';
    $userClass = $t['user_class'] ?? 'in_memory';
    $id = $t['user'] ?? null;

    if ('anonymous' === $kind) {
        // AnonymousListener's token: secret, user "anon." (or the given id), no roles.
        return new AnonymousToken('wsgate-fixture-secret', null === $id ? 'anon.' : (string) $id, $roles);
    }
    if (null === $id) {
        throw new InvalidArgumentException("token \"$kind\" needs a user");
    }
    $user = wsgate_user((string) $id, $roles, $userClass);
    switch ($kind) {
        case 'username_password':
            return new UsernamePasswordToken($user, $firewall, $roles);
        case 'pre_authenticated':
            return new PreAuthenticatedToken($user, $firewall, $roles);
        case 'post_authentication':
            $cls = 'Symfony\\Component\\Security\\Http\\Authenticator\\Token\\PostAuthenticationToken';
            if (!class_exists($cls)) {
                throw new RuntimeException('post_authentication needs php-symfony-security-http');
            }
            return new $cls($user, $firewall, $roles);
        case 'remember_me':
            // RememberMeToken takes its roles from the user.
            return new RememberMeToken($user, $firewall, 'wsgate-fixture-secret');
        case 'switch_user':
            $admin = new InMemoryUser('admin-'.$id, null, ['ROLE_ADMIN', 'ROLE_ALLOWED_TO_SWITCH']);
            $original = new UsernamePasswordToken($admin, $firewall, ['ROLE_ADMIN', 'ROLE_ALLOWED_TO_SWITCH']);
            return new SwitchUserToken($user, $firewall, $roles, $original, '/admin');
    }
    throw new InvalidArgumentException("unknown token \"$kind\"");
}

/** Creates the save handler the input asks for. */
function wsgate_handler(array $in)
{
    switch ($in['store'] ?? '') {
        case 'files':
            if (empty($in['dir'])) {
                throw new InvalidArgumentException('store "files" needs "dir"');
            }
            return new NativeFileSessionHandler((string) $in['dir']);
        case 'pdo':
            if (empty($in['dsn'])) {
                throw new InvalidArgumentException('store "pdo" needs "dsn"');
            }
            $handler = new PdoSessionHandler((string) $in['dsn'], [
                'db_table' => (string) ($in['table'] ?? 'sessions'),
                'db_username' => (string) ($in['db_user'] ?? ''),
                'db_password' => (string) ($in['db_password'] ?? ''),
            ]);
            if (!empty($in['create_table'])) {
                try {
                    $handler->createTable();
                } catch (PDOException $e) {
                    // 42S01 (MySQL) / 42P07 (PostgreSQL): the table already exists,
                    // which is what a second writer into the same table sees.
                    $state = $e->errorInfo[0] ?? $e->getCode();
                    if (!in_array($state, ['42S01', '42P07'], true) && false === stripos($e->getMessage(), 'already exists')) {
                        throw $e;
                    }
                }
            }
            return $handler;
        case 'memcached':
            if (!extension_loaded('memcached')) {
                throw new RuntimeException('store "memcached" needs php8.2-memcached');
            }
            if (isset($in['compression_type'])) {
                // Read by the \Memcached constructor: set it first.
                ini_set('memcached.compression_type', (string) $in['compression_type']);
                if (ini_get('memcached.compression_type') !== (string) $in['compression_type']) {
                    throw new RuntimeException('memcached.compression_type '.$in['compression_type'].' not supported by this build');
                }
            }
            $memcached = new Memcached();
            $memcached->addServer((string) ($in['host'] ?? '127.0.0.1'), (int) ($in['port'] ?? 11211));
            $memcached->setOption(Memcached::OPT_COMPRESSION, (bool) ($in['compression'] ?? true));
            $GLOBALS['wsgate_key_prefix'] = (string) ($in['prefix'] ?? 'sf2s');

            return new MemcachedSessionHandler($memcached, ['prefix' => $GLOBALS['wsgate_key_prefix'], 'ttl' => (int) ($in['ttl'] ?? 1440)]);
        case 'memcached_native':
            if (!extension_loaded('memcached')) {
                throw new RuntimeException('store "memcached_native" needs php8.2-memcached');
            }
            $GLOBALS['wsgate_key_prefix'] = (string) ($in['prefix'] ?? 'memc.sess.key.');
            // NativeSessionStorage has no option for these: set them
            // before it wraps PHP's current handler in \SessionHandler.
            ini_set('memcached.sess_prefix', $GLOBALS['wsgate_key_prefix']);
            ini_set('session.save_handler', 'memcached');
            ini_set('session.save_path', sprintf('%s:%d', (string) ($in['host'] ?? '127.0.0.1'), (int) ($in['port'] ?? 11211)));

            return null;
    }
    throw new InvalidArgumentException('"store" must be files, pdo, memcached or memcached_native');
}

/**
 * Writes one session and returns ['id' => ..., 'name' => ...].
 */
function wsgate_write_session(array $in): array
{
    wsgate_autoload();

    $options = [
        // CLI has no HTTP response: no cookie, no cache headers, and the id we
        // are given (or PHP's fresh one) must be accepted as is.
        'use_cookies' => 0,
        'use_only_cookies' => 0,
        'use_trans_sid' => 0,
        'use_strict_mode' => 0,
        'cache_limiter' => '',
        'lazy_write' => 0,
        'gc_probability' => 0,
        'name' => (string) ($in['name'] ?? 'PHPSESSID'),
        'serialize_handler' => (string) ($in['serialize_handler'] ?? 'php'),
    ];
    if (isset($in['ttl'])) {
        $options['gc_maxlifetime'] = (int) $in['ttl'];
    }
    if (!in_array($options['serialize_handler'], ['php', 'php_binary', 'php_serialize', 'igbinary'], true)) {
        throw new InvalidArgumentException('serialize_handler must be php, php_binary, php_serialize or igbinary');
    }

    $storage = new NativeSessionStorage($options, wsgate_handler($in));
    // setOptions() silently does nothing once output started; check it took.
    if (ini_get('session.serialize_handler') !== $options['serialize_handler']) {
        throw new RuntimeException('could not set session.serialize_handler (output already sent?)');
    }
    $session = new Session($storage);
    if (!empty($in['id'])) {
        $session->setId((string) $in['id']);
    }
    $session->start();

    foreach ((array) ($in['attributes_before'] ?? []) as $k => $v) {
        $session->set((string) $k, $v);
    }

    if (isset($in['tokens'])) {
        $tokens = $in['tokens'];
    } elseif (array_key_exists('user', $in) && null === $in['user'] && 'anonymous' !== ($in['token'] ?? null)) {
        $tokens = [];
        // An anonymous visitor still has a session: give it something.
        $session->set('_wsgate_visitor', 'anonymous|visitor');
    } else {
        $tokens = [[
            'firewall' => $in['firewall'] ?? 'main',
            'user' => $in['user'] ?? null,
            'roles' => $in['roles'] ?? [],
            'token' => $in['token'] ?? 'username_password',
            'user_class' => $in['user_class'] ?? 'in_memory',
        ]];
    }
    foreach ($tokens as $t) {
        $firewall = (string) ($t['firewall'] ?? 'main');
        // Exactly ContextListener::onKernelResponse().
        $session->set('_security_'.$firewall, serialize(wsgate_token($t)));
    }

    foreach ((array) ($in['attributes_after'] ?? []) as $k => $v) {
        $session->set((string) $k, $v);
    }
    foreach ((array) ($in['flashes'] ?? []) as $type => $msgs) {
        foreach ((array) $msgs as $m) {
            $session->getFlashBag()->add((string) $type, $m);
        }
    }

    $id = $session->getId();
    $name = $session->getName();
    $session->save();

    $out = ['id' => $id, 'name' => $name];
    if (isset($GLOBALS['wsgate_key_prefix'])) {
        $out['key'] = $GLOBALS['wsgate_key_prefix'].$id;
    }

    return $out;
}

/** CLI entry point: strict errors, JSON in, JSON out. */
function wsgate_main(array $argv): int
{
    set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
        if ($no & (E_DEPRECATED | E_USER_DEPRECATED)) {
            return true; // Symfony 5.4 deprecations are expected noise here.
        }
        throw new ErrorException($msg, 0, $no, $file, $line);
    });
    try {
        if (2 !== count($argv)) {
            throw new InvalidArgumentException('usage: php write-session.php \'<json>\'');
        }
        $in = json_decode($argv[1], true, 64, JSON_THROW_ON_ERROR);
        if (!is_array($in)) {
            throw new InvalidArgumentException('argument must be a JSON object');
        }
        $out = wsgate_write_session($in);
        fwrite(STDOUT, json_encode($out, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES)."\n");

        return 0;
    } catch (Throwable $e) {
        fwrite(STDERR, 'write-session: '.get_class($e).': '.$e->getMessage()."\n");

        return 1;
    }
}

if (PHP_SAPI === 'cli' && isset($_SERVER['SCRIPT_FILENAME']) && realpath($_SERVER['SCRIPT_FILENAME']) === __FILE__) {
    exit(wsgate_main($argv));
}
